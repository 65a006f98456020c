import { describe, expect, it } from "vitest";
import { parseCommandLine, UsageError } from "../../../src/cli/args.js";

const options = {
  on: { type: "boolean" },
  hue: { type: "string" },
  brightness: { type: "string" },
  check: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function usage(args: string[], allowPositionals = false): string {
  try {
    parseCommandLine({ args, options, allowPositionals });
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error(`${args.join(" ")} was accepted`);
}

describe("parseCommandLine", () => {
  it("parses what it knows", () => {
    expect(parseCommandLine({ args: ["--on", "--hue", "0.5", "-h"], options }).values).toEqual({
      on: true,
      hue: "0.5",
      help: true,
    });
  });

  it.each([
    [["--bright", "0.5"], "unknown option --bright; did you mean --brightness?"],
    [["--brihgtness", "1"], "unknown option --brihgtness; did you mean --brightness?"],
    [["--chek"], "unknown option --chek; did you mean --check?"],
    [["--bogus"], "unknown option --bogus"],
    [["-x"], "unknown option -x"],
    [["--hue"], "--hue needs a value"],
    [["--on=yes"], "--on takes no value"],
    [["stray"], 'unexpected argument "stray"'],
  ])("%j: %s", (args, message) => {
    expect(usage(args)).toBe(message);
  });
});

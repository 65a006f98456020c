// The hand-written check for valid commands must give zod's verdict on every command: 200,000 random
// ones from a seeded generator, weighted to the edges (bounds, -0, 1e-9, strings that look like numbers,
// nested objects, extra and prototype-named fields, clients of 64 and 65 characters, 3600 and 3600.01).
import { describe, expect, it } from "vitest";
import {
  CommandError,
  checkWithSchema,
  MAX_PAYLOAD_BYTES,
  parseCommand,
  validCommand,
} from "../../../src/lamp/command.js";
import { command, random, toJson } from "../../helpers/random-commands.js";

type Verdict = { ok: true; command: unknown } | { ok: false; code: string; message: string; client: unknown };

function verdict(run: () => unknown): Verdict {
  try {
    return { ok: true, command: run() };
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    return { ok: false, code: error.code, message: error.message, client: error.client };
  }
}

describe("validCommand, the fast path, against the schema", () => {
  it("gives zod's verdict on 200,000 seeded random commands, valid ones through the fast path", () => {
    const next = random(22);
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 200_000; i++) {
      const text = toJson(command(next));
      const label = text.length > 300 ? `${text.slice(0, 300)}...` : text;
      const json = JSON.parse(text) as object;
      const reference = verdict(() => checkWithSchema(json));
      const fast = validCommand(JSON.parse(text) as object);
      const bytes = new TextEncoder().encode(text);
      const whole = verdict(() => parseCommand(bytes));
      if (reference.ok) {
        accepted++;
        // Every valid command takes the fast path, with the same value (toEqual tells -0 from 0).
        expect(fast, label).toEqual(reference.command);
      } else {
        rejected++;
        expect(fast, label).toBeUndefined();
      }
      // And parseCommand as a whole says what the schema says, refusals word for word, once a payload
      // is within the 4 KiB refused before parsing.
      if (bytes.byteLength > MAX_PAYLOAD_BYTES) expect(whole).toMatchObject({ code: "payload_too_large" });
      else expect(whole, label).toEqual(reference);
    }
    // Both sides well represented, so the comparison means something.
    expect(accepted).toBeGreaterThan(60_000);
    expect(rejected).toBeGreaterThan(60_000);
  });

  it("keeps -0, 1e-9 and the bounds as they came", () => {
    expect(Object.is(validCommand(JSON.parse('{"brightness": -0}'))?.brightness, -0)).toBe(true);
    expect(validCommand(JSON.parse('{"transition": 1e-9}'))).toEqual({ transition: 1e-9 });
    expect(validCommand(JSON.parse('{"transition": 3600}'))).toEqual({ transition: 3600 });
    expect(validCommand(JSON.parse('{"transition": 3600.01}'))).toBeUndefined();
    expect(validCommand(JSON.parse(`{"client": "${"c".repeat(65)}"}`))).toBeUndefined();
    expect(validCommand(JSON.parse('{"__proto__": {"on": true}}'))).toBeUndefined();
  });
});

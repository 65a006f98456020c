import { describe, expect, it } from "vitest";
import {
  applyCommand,
  type Command,
  CommandError,
  MAX_PAYLOAD_BYTES,
  parseCommand,
} from "../../../src/lamp/command.js";
import { makeState } from "../../../src/lamp/state.js";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const parse = (text: string): Command => parseCommand(bytes(text));

/** The CommandError `fn` throws (fails the test when it does not throw one). */
function rejection(fn: () => unknown): CommandError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(CommandError);
    return error as CommandError;
  }
  throw new Error("expected a CommandError, nothing was thrown");
}

describe("parseCommand: accepted", () => {
  it("takes the full LAMPI shape", () => {
    expect(
      parse(
        '{"on": true, "color": {"h": 0.33, "s": 1.0}, "brightness": 0.8, "transition": 0.5, "client": "lamp_ui"}',
      ),
    ).toEqual({ on: true, color: { h: 0.33, s: 1 }, brightness: 0.8, transition: 0.5, client: "lamp_ui" });
  });

  it("takes an empty object and partial colours", () => {
    expect(parse("{}")).toEqual({});
    expect(parse('{"color": {"h": 0.5}}')).toEqual({ color: { h: 0.5 } });
  });

  it("accepts the bounds", () => {
    expect(parse('{"brightness": 0, "color": {"h": 1, "s": 0}, "transition": 3600}')).toEqual({
      brightness: 0,
      color: { h: 1, s: 0 },
      transition: 3600,
    });
    expect(parse(`{"client": "${"c".repeat(64)}"}`).client).toHaveLength(64);
  });

  it("accepts a payload of exactly the limit", () => {
    const text = `{"on": true}${" ".repeat(MAX_PAYLOAD_BYTES - 12)}`;
    expect(bytes(text).byteLength).toBe(4096);
    expect(parse(text)).toEqual({ on: true });
  });
});

describe("parseCommand: rejected before parsing", () => {
  it("refuses a payload over 4 KiB", () => {
    const text = `{"on": true}${" ".repeat(MAX_PAYLOAD_BYTES - 11)}`;
    const error = rejection(() => parse(text));
    expect(error.code).toBe("payload_too_large");
    expect(error.message).toBe("payload is 4097 bytes; the limit is 4096");
    expect(error.client).toBeNull();
  });

  it("refuses invalid UTF-8", () => {
    const error = rejection(() => parseCommand(Uint8Array.from([0x7b, 0xff, 0x7d])));
    expect(error.code).toBe("invalid_json");
    expect(error.message).toBe("payload is not valid UTF-8");
  });

  it("refuses text that is not JSON", () => {
    const error = rejection(() => parse('{"on": tru'));
    expect(error.code).toBe("invalid_json");
    expect(error.message).toMatch(/^payload is not JSON: /);
  });

  it.each(["[1, 2]", "null", "42", '"on"', "true"])("refuses JSON that is not an object: %s", (text) => {
    const error = rejection(() => parse(text));
    expect(error.code).toBe("invalid_json");
    expect(error.message).toBe('payload must be a JSON object like {"on": true}');
  });
});

describe("parseCommand: field errors name the field", () => {
  it.each([
    ['{"on": "true"}', "on must be a boolean"],
    ['{"on": 1}', "on must be a boolean"],
    ['{"brightness": 1.01}', "brightness must be a number from 0 to 1"],
    ['{"brightness": -0.1}', "brightness must be a number from 0 to 1"],
    ['{"brightness": null}', "brightness must be a number from 0 to 1"],
    ['{"brightness": "0.5"}', "brightness must be a number from 0 to 1"],
    ['{"brightness": 1e400}', "brightness must be a number from 0 to 1"],
    ['{"color": {"h": 1.5}}', "color.h must be a number from 0 to 1"],
    ['{"color": {"s": -1}}', "color.s must be a number from 0 to 1"],
    ['{"color": 0.5}', 'color must be an object like {"h": 0.5, "s": 1}'],
    ['{"transition": 3601}', "transition must be a number of seconds from 0 to 3600"],
    ['{"transition": -1}', "transition must be a number of seconds from 0 to 3600"],
    ['{"client": ""}', "client must be a string of 1 to 64 characters"],
    [`{"client": "${"c".repeat(65)}"}`, "client must be a string of 1 to 64 characters"],
    ['{"client": 7}', "client must be a string of 1 to 64 characters"],
  ])("%s -> invalid_field", (text, message) => {
    const error = rejection(() => parse(text));
    expect(error.code).toBe("invalid_field");
    expect(error.message).toBe(message);
  });

  it("rejects the whole command when one field is bad, and lists every bad field", () => {
    const error = rejection(() => parse('{"on": true, "brightness": 2, "color": {"h": -1}}'));
    expect(error.code).toBe("invalid_field");
    expect(error.message).toContain("brightness must be a number from 0 to 1");
    expect(error.message).toContain("color.h must be a number from 0 to 1");
  });

  it("rejects unknown fields by name, nested ones with their path", () => {
    expect(rejection(() => parse('{"on": true, "colour": {}}'))).toMatchObject({
      code: "unknown_field",
      message: "unknown field: colour",
    });
    expect(rejection(() => parse('{"color": {"h": 0.5, "v": 1}}'))).toMatchObject({
      code: "unknown_field",
      message: "unknown field: color.v",
    });
    expect(rejection(() => parse('{"a": 1, "b": 2}'))).toMatchObject({
      code: "unknown_field",
      message: "unknown fields: a, b",
    });
  });

  it("reports unknown_field when unknown and invalid fields come together, naming both", () => {
    const error = rejection(() => parse('{"brightness": 2, "extra": 1}'));
    expect(error.code).toBe("unknown_field");
    expect(error.message).toContain("unknown field: extra");
    expect(error.message).toContain("brightness must be a number from 0 to 1");
  });

  it("names the sender in the error even when another field is bad", () => {
    expect(rejection(() => parse('{"brightness": 2, "client": "lamp_ui"}')).client).toBe("lamp_ui");
    expect(rejection(() => parse('{"extra": 1, "client": "lampctl"}')).client).toBe("lampctl");
  });

  it("does not name a sender whose client field is itself invalid", () => {
    expect(rejection(() => parse('{"client": ""}')).client).toBeNull();
    expect(rejection(() => parse(`{"brightness": 2, "client": "${"c".repeat(65)}"}`)).client).toBeNull();
    expect(rejection(() => parse('{"brightness": 2, "client": 5}')).client).toBeNull();
  });
});

describe("applyCommand", () => {
  const current = makeState(true, 0.5, 1, 0.8);

  it("changes only the given fields", () => {
    expect(applyCommand(current, { on: false })).toEqual({
      on: false,
      color: { h: 0.5, s: 1 },
      brightness: 0.8,
    });
    expect(applyCommand(current, { color: { s: 0.2 } })).toEqual({
      on: true,
      color: { h: 0.5, s: 0.2 },
      brightness: 0.8,
    });
    expect(applyCommand(current, {})).toEqual(current);
  });

  it("quantises to two decimals: 0.123 -> 0.12, 0.125 -> 0.13", () => {
    expect(applyCommand(current, { brightness: 0.123 }).brightness).toBe(0.12);
    expect(applyCommand(current, { brightness: 0.125 }).brightness).toBe(0.13);
    expect(applyCommand(current, { color: { h: 0.333, s: 0.666 } }).color).toEqual({ h: 0.33, s: 0.67 });
  });

  it("ignores transition and client: they are not state", () => {
    expect(applyCommand(current, { transition: 2, client: "x" })).toEqual(current);
  });
});

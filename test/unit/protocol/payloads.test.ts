import { describe, expect, it } from "vitest";
import { makeState } from "../../../src/lamp/state.js";
import { statePayload } from "../../../src/protocol/payloads.js";

describe("statePayload", () => {
  // Written by hand for speed; JSON.stringify of the same object is the reference it must match.
  const reference = (state: Parameters<typeof statePayload>[0], client: string | null): string =>
    JSON.stringify({ on: state.on, color: state.color, brightness: state.brightness, client });

  it("is byte for byte what JSON.stringify gives, for every two-decimal state", () => {
    for (let h = 0; h <= 100; h += 7) {
      for (let b = 0; b <= 100; b++) {
        const state = makeState(b % 2 === 0, h / 100, (100 - b) / 100, b / 100);
        expect(statePayload(state, "ui")).toBe(reference(state, "ui"));
      }
    }
  });

  it("writes any other number as JSON does too (a state is kept at two decimals, but the payload does not rely on it)", () => {
    for (const value of [0.125, 1 / 3, 1e-7, 0.999999, -0, 0.07, 0.29, 0.57, 1]) {
      const state = { on: false, color: { h: value, s: value }, brightness: value };
      expect(statePayload(state, null)).toBe(reference(state, null));
    }
  });

  it("escapes any client name as JSON does, and writes null for an unnamed sender", () => {
    const state = makeState(true, 0.5, 1, 0.25);
    for (const client of [
      'say "hi"',
      "back\\slash",
      "line\nbreak",
      "tab\t",
      "\u0001",
      "ümlaut 💡",
      "</script>",
      null,
    ]) {
      const payload = statePayload(state, client);
      expect(payload).toBe(reference(state, client));
      expect(JSON.parse(payload)).toEqual({ on: true, color: { h: 0.5, s: 1 }, brightness: 0.25, client });
    }
  });
});

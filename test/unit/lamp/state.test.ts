import { describe, expect, it } from "vitest";
import { DEFAULT_STATE, makeState, quantize, sameState, unit } from "../../../src/lamp/state.js";

describe("quantize", () => {
  it("keeps two decimals, rounding half up", () => {
    expect(quantize(0.123)).toBe(0.12);
    expect(quantize(0.125)).toBe(0.13);
    expect(quantize(0.129)).toBe(0.13);
    expect(quantize(0)).toBe(0);
    expect(quantize(1)).toBe(1);
  });

  it("rounds every x.xx5 in [0, 1] up, despite binary representation", () => {
    for (let k = 5; k < 1000; k += 10) {
      expect(quantize(k / 1000), `quantize(${k / 1000})`).toBe((k + 5) / 1000);
    }
  });

  it("is idempotent", () => {
    for (let k = 0; k <= 100; k++) expect(quantize(quantize(k / 100))).toBe(k / 100);
  });
});

describe("makeState and sameState", () => {
  it("quantises every number", () => {
    expect(makeState(true, 0.333, 0.996, 0.124)).toEqual({
      on: true,
      color: { h: 0.33, s: 1 },
      brightness: 0.12,
    });
  });

  it("compares every field", () => {
    const base = makeState(true, 0.5, 0.5, 0.5);
    expect(sameState(base, makeState(true, 0.5, 0.5, 0.5))).toBe(true);
    expect(sameState(base, makeState(false, 0.5, 0.5, 0.5))).toBe(false);
    expect(sameState(base, makeState(true, 0.51, 0.5, 0.5))).toBe(false);
    expect(sameState(base, makeState(true, 0.5, 0.51, 0.5))).toBe(false);
    expect(sameState(base, makeState(true, 0.5, 0.5, 0.51))).toBe(false);
  });

  it("has a frozen default: on, white, full brightness", () => {
    expect(DEFAULT_STATE).toEqual({ on: true, color: { h: 0, s: 0 }, brightness: 1 });
    expect(Object.isFrozen(DEFAULT_STATE)).toBe(true);
    expect(Object.isFrozen(DEFAULT_STATE.color)).toBe(true);
  });
});

describe("unit: the one rule for the state's numbers", () => {
  it("takes 0 to 1 and nothing else", () => {
    for (const value of [0, 0.5, 1]) expect(unit.safeParse(value).success, String(value)).toBe(true);
    for (const value of [-0.01, 1.01, Number.NaN, "0.5"]) {
      expect(unit.safeParse(value).success, String(value)).toBe(false);
    }
  });
});

import { describe, expect, it } from "vitest";
import { hsvToRgb, levelsFor, toDuty } from "../../../src/lamp/colour.js";
import { makeState } from "../../../src/lamp/state.js";

function expectClose(actual: readonly number[], expected: readonly number[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((value, i) => {
    expect(value, `component ${i} of [${actual.join(", ")}]`).toBeCloseTo(expected[i] ?? Number.NaN, 9);
  });
}

describe("hsvToRgb", () => {
  it.each([
    [0, [1, 0, 0]],
    [1 / 6, [1, 1, 0]],
    [1 / 3, [0, 1, 0]],
    [0.5, [0, 1, 1]],
    [2 / 3, [0, 0, 1]],
    [5 / 6, [1, 0, 1]],
  ])("h=%s at full saturation and value", (h, rgb) => {
    expectClose(hsvToRgb(h, 1, 1), rgb);
  });

  it("wraps around: h=1 is red again", () => {
    expectClose(hsvToRgb(1, 1, 1), [1, 0, 0]);
    expectClose(hsvToRgb(1, 1, 0.5), hsvToRgb(0, 1, 0.5));
  });

  it("is continuous just below the wrap", () => {
    const [r, g, b] = hsvToRgb(0.99, 1, 1);
    expect(r).toBe(1);
    expect(g).toBe(0);
    expect(b).toBeCloseTo(0.06, 9);
  });

  it("is white at zero saturation and black at zero value, whatever the hue", () => {
    for (const h of [0, 0.25, 0.5, 0.75, 1]) {
      expectClose(hsvToRgb(h, 0, 0.7), [0.7, 0.7, 0.7]);
      expectClose(hsvToRgb(h, 1, 0), [0, 0, 0]);
    }
  });

  it("mixes halfway between primaries", () => {
    expectClose(hsvToRgb(1 / 12, 1, 1), [1, 0.5, 0]);
    expectClose(hsvToRgb(0, 0.5, 1), [1, 0.5, 0.5]);
  });
});

describe("levelsFor", () => {
  it("gives a mono lamp its brightness, ignoring colour", () => {
    expect(levelsFor(makeState(true, 0.33, 1, 0.4), 1)).toEqual([0.4]);
    expect(levelsFor(makeState(true, 0, 0, 1), 1)).toEqual([1]);
  });

  it("is dark when off, whatever the brightness", () => {
    expect(levelsFor(makeState(false, 0.33, 1, 0.8), 1)).toEqual([0]);
    expect(levelsFor(makeState(false, 0.33, 1, 0.8), 3)).toEqual([0, 0, 0]);
  });

  it("gives an RGB lamp the colour scaled by brightness", () => {
    expectClose(levelsFor(makeState(true, 0, 1, 0.5), 3), [0.5, 0, 0]);
    expectClose(levelsFor(makeState(true, 0, 0, 0.8), 3), [0.8, 0.8, 0.8]);
    expectClose(levelsFor(makeState(true, 1, 1, 1), 3), [1, 0, 0]);
  });
});

describe("toDuty", () => {
  it("is linear at gamma 1", () => {
    for (const level of [0, 0.1, 0.25, 0.5, 0.77, 1]) expect(toDuty(level, 1)).toBe(level);
  });

  it("applies the gamma curve, keeping the ends fixed", () => {
    expect(toDuty(0.5, 2.2)).toBeCloseTo(0.5 ** 2.2, 12);
    expect(toDuty(0.5, 2.2)).toBeCloseTo(0.2176, 4);
    expect(toDuty(0, 2.2)).toBe(0);
    expect(toDuty(1, 2.2)).toBe(1);
  });

  it("is monotonic", () => {
    let previous = -1;
    for (let k = 0; k <= 100; k++) {
      const duty = toDuty(k / 100, 2.2);
      expect(duty).toBeGreaterThan(previous);
      previous = duty;
    }
  });

  it("clamps levels outside [0, 1]", () => {
    expect(toDuty(1.2, 2.2)).toBe(1);
    expect(toDuty(-0.2, 1)).toBe(0);
  });
});

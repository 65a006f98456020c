import { describe, expect, it } from "vitest";
import { ReconnectBackoff } from "../../../src/mqtt/backoff.js";

const range = { initialMs: 100, maxMs: 1000 };

describe("ReconnectBackoff", () => {
  it("doubles from the initial delay up to the maximum", () => {
    const backoff = new ReconnectBackoff(range, () => 0.5);
    expect(Array.from({ length: 6 }, () => backoff.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it("jitters each delay by up to 20 % either way", () => {
    expect(new ReconnectBackoff(range, () => 0).next()).toBe(80);
    expect(new ReconnectBackoff(range, () => 0.999_999).next()).toBe(120);
  });

  it("starts again from the initial delay after reset()", () => {
    const backoff = new ReconnectBackoff(range, () => 0.5);
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.next()).toBe(100);
  });

  it("longest() jumps to the maximum and stays there until reset()", () => {
    const backoff = new ReconnectBackoff(range, () => 0.5);
    expect(backoff.longest()).toBe(1000);
    expect(backoff.next()).toBe(1000);
    backoff.reset();
    expect(backoff.next()).toBe(100);
  });

  it("handles a maximum that is not a power-of-two multiple, or equal to the initial delay", () => {
    expect(new ReconnectBackoff({ initialMs: 300, maxMs: 1000 }, () => 0.5).longest()).toBe(1000);
    expect(new ReconnectBackoff({ initialMs: 500, maxMs: 500 }, () => 0.5).longest()).toBe(500);
  });
});

import { describe, expect, it } from "vitest";
import { ReconnectBackoff } from "../../../src/mqtt/backoff.js";

const range = { initialMs: 100, maxMs: 5000 };

describe("ReconnectBackoff", () => {
  it("doubles its ceiling from eight times the initial delay up to the maximum", () => {
    const backoff = new ReconnectBackoff(range, () => 1);
    expect(Array.from({ length: 6 }, () => backoff.next())).toEqual([800, 1600, 3200, 5000, 5000, 5000]);
  });

  it("draws each delay between a tenth of its ceiling and the ceiling, from the very first one", () => {
    expect(new ReconnectBackoff(range, () => 0).next()).toBe(80);
    expect(new ReconnectBackoff(range, () => 0.5).next()).toBe(440);
  });

  it("starts again from the first ceiling after reset()", () => {
    const backoff = new ReconnectBackoff(range, () => 1);
    backoff.next();
    backoff.next();
    backoff.reset();
    expect(backoff.next()).toBe(800);
  });

  it("spreads a fleet's first tries: no 1 s bucket holds more than 40 % of 1000 lamps (defaults 1 s to 20 s)", () => {
    const delays = Array.from({ length: 1000 }, () =>
      new ReconnectBackoff({ initialMs: 1000, maxMs: 20_000 }).next(),
    );
    const buckets = new Map<number, number>();
    for (const delay of delays)
      buckets.set(Math.floor(delay / 1000), (buckets.get(Math.floor(delay / 1000)) ?? 0) + 1);
    expect(Math.max(...buckets.values())).toBeLessThan(250);
    expect(Math.max(...delays)).toBeLessThanOrEqual(8000);
  });

  it("never exceeds the maximum, however many attempts", () => {
    const backoff = new ReconnectBackoff({ initialMs: 300, maxMs: 1000 }, () => 1);
    for (let i = 0; i < 100; i++) expect(backoff.next()).toBeLessThanOrEqual(1000);
  });
});

import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../../src/mqtt/rate-limit.js";

function clock() {
  let now = 50_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe("RateLimiter", () => {
  it("allows a burst, then refuses and counts what it refused", () => {
    const time = clock();
    const limiter = new RateLimiter(3, 1, time.now);
    expect([limiter.take(), limiter.take(), limiter.take()]).toEqual([true, true, true]);
    expect(limiter.take()).toBe(false);
    expect(limiter.take()).toBe(false);
    expect(limiter.suppressed).toBe(2);
  });

  it("refills at the given rate", () => {
    const time = clock();
    const limiter = new RateLimiter(2, 2, time.now);
    limiter.take();
    limiter.take();
    time.advance(499);
    expect(limiter.take()).toBe(false);
    time.advance(1);
    expect(limiter.take()).toBe(true);
    expect(limiter.take()).toBe(false);
    time.advance(1000);
    expect(limiter.take()).toBe(true);
    expect(limiter.take()).toBe(true);
    expect(limiter.take()).toBe(false);
  });

  it("never saves up more than the burst", () => {
    const time = clock();
    const limiter = new RateLimiter(3, 10, time.now);
    time.advance(3_600_000);
    const taken = Array.from({ length: 10 }, () => limiter.take()).filter(Boolean);
    expect(taken).toHaveLength(3);
  });

  it("lets a steady flood through at the rate only", () => {
    const time = clock();
    const limiter = new RateLimiter(10, 2, time.now);
    let allowed = 0;
    for (let ms = 0; ms < 10_000; ms += 10) {
      if (limiter.take()) allowed++;
      time.advance(10);
    }
    // 10 at once, then 2 per second for 10 seconds.
    expect(allowed).toBeGreaterThanOrEqual(29);
    expect(allowed).toBeLessThanOrEqual(31);
  });
});

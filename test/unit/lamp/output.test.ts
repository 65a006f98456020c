import { afterEach, describe, expect, it, vi } from "vitest";
import { MockDriver } from "../../../src/drivers/mock.js";
import { FADE_HZ, Output } from "../../../src/lamp/output.js";
import { captureLogger, LEVEL, silentLogger } from "../../helpers/log.js";

function mockDriver(pins: readonly number[] = [19, 26, 13]): MockDriver {
  return new MockDriver({
    pins,
    activeLow: false,
    frequency: 1000,
    sysfsRoot: "/sys",
    logger: silentLogger(),
  });
}

/** Lets setImmediate callbacks and the writes they start run (real timers). */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 5));

afterEach(() => {
  vi.useRealTimers();
});

describe("Output: immediate targets and coalescing", () => {
  it("opens the driver with the initial levels, gamma applied", async () => {
    const driver = mockDriver([5]);
    const output = new Output(driver, { gamma: 2, logger: silentLogger() });
    await output.open([0.5]);
    expect(driver.duties).toEqual([0.25]);
    expect(output.current).toEqual([0.5]);
    expect(output.writes).toBe(0);
  });

  it("writes the first of a synchronous burst of 1000 targets at once, and the rest as one write of the last", async () => {
    const driver = mockDriver();
    const write = vi.spyOn(driver, "write");
    const output = new Output(driver, { gamma: 1, logger: silentLogger() });
    await output.open([0, 0, 0]);
    output.setTarget([0.001, 0, 0.999], 0);
    // In the command's own turn: a steady stream costs no extra turn of the event loop per command.
    expect(write).toHaveBeenCalledTimes(1);
    for (let i = 2; i <= 1000; i++) output.setTarget([i / 1000, 0, 1 - i / 1000], 0);
    await settle();
    expect(write).toHaveBeenCalledTimes(2);
    expect(write).toHaveBeenLastCalledWith([1, 0, 0]);
    expect(output.writes).toBe(2);
    expect(driver.duties).toEqual([1, 0, 0]);
  });

  it("does not write when the duties did not change", async () => {
    const driver = mockDriver();
    const write = vi.spyOn(driver, "write");
    const output = new Output(driver, { gamma: 2.2, logger: silentLogger() });
    await output.open([0.2, 0.4, 0.6]);
    output.setTarget([0.2, 0.4, 0.6], 0);
    output.setTarget([0.2, 0.4, 0.6], 0);
    await settle();
    expect(write).not.toHaveBeenCalled();
    expect(output.writes).toBe(0);
  });

  // BUG (src/lamp/output.ts, schedule/flush): when a flush has nothing to write it never awaits, so its
  // `finally { this.inFlight = undefined }` runs synchronously inside `this.flush()`, *before*
  // `this.inFlight = this.flush()` stores the (already settled) promise. `inFlight` then stays set for
  // ever and every later setTarget is silently dropped until close(). Remove `.fails` once fixed.
  it("still writes the next change after a target that changed no duty", async () => {
    const driver = mockDriver([5]);
    const output = new Output(driver, { gamma: 1, logger: silentLogger() });
    await output.open([0.2]);
    output.setTarget([0.2], 0);
    await settle();
    output.setTarget([0.9], 0);
    await settle();
    expect(driver.duties).toEqual([0.9]);
  });

  it("keeps one write in flight and collapses what arrives meanwhile into one write of the newest", async () => {
    const driver = mockDriver([5]);
    const real = driver.write.bind(driver);
    const releases: (() => void)[] = [];
    const write = vi.spyOn(driver, "write").mockImplementation(async (duties) => {
      await new Promise<void>((resolve) => releases.push(resolve));
      await real(duties);
    });
    const output = new Output(driver, { gamma: 1, logger: silentLogger() });
    await output.open([0]);
    output.setTarget([0.1], 0);
    await settle();
    expect(write).toHaveBeenCalledTimes(1);
    for (const level of [0.2, 0.3, 0.4]) {
      output.setTarget([level], 0);
      await settle();
    }
    expect(write).toHaveBeenCalledTimes(1); // still waiting for the first
    releases.shift()?.();
    await settle();
    expect(write).toHaveBeenCalledTimes(2);
    expect(write).toHaveBeenLastCalledWith([0.4]);
    releases.shift()?.();
    await settle();
    expect(write).toHaveBeenCalledTimes(2);
    expect(driver.duties).toEqual([0.4]);
  });

  it("close waits for the newest target to reach the pins, then ignores targets", async () => {
    const driver = mockDriver([5]);
    const write = vi.spyOn(driver, "write");
    const output = new Output(driver, { gamma: 1, logger: silentLogger() });
    await output.open([0]);
    output.setTarget([0.7], 0);
    await output.close();
    expect(driver.duties).toEqual([0.7]);
    output.setTarget([0.1], 0);
    await settle();
    expect(write).toHaveBeenCalledTimes(1);
    expect(driver.duties).toEqual([0.7]);
  });

  it("hold keeps targets off the pins; release writes only the newest", async () => {
    const driver = mockDriver([5]);
    const write = vi.spyOn(driver, "write");
    const output = new Output(driver, { gamma: 1, logger: silentLogger() });
    await output.open([0]);
    output.hold();
    output.setTarget([0.3], 0);
    await settle();
    output.setTarget([0.6], 0);
    await settle();
    expect(write).not.toHaveBeenCalled();
    expect(output.current).toEqual([0.6]);
    output.release();
    await settle();
    expect(write).toHaveBeenCalledTimes(1);
    expect(driver.duties).toEqual([0.6]);
    output.release(); // a second release does nothing
    await settle();
    expect(write).toHaveBeenCalledTimes(1);
  });

  it("logs a failing driver once per failure streak, and when it recovers", async () => {
    const driver = mockDriver([5]);
    const { logger, lines } = captureLogger();
    let fail = true;
    const real = driver.write.bind(driver);
    vi.spyOn(driver, "write").mockImplementation(async (duties) => {
      if (fail) throw new Error("EIO");
      await real(duties);
    });
    const output = new Output(driver, { gamma: 1, logger });
    await output.open([0]);
    for (const level of [0.1, 0.2, 0.3]) {
      output.setTarget([level], 0);
      await settle();
    }
    expect(lines.filter((l) => l.level === LEVEL.error)).toHaveLength(1);
    expect(lines[0]?.msg).toBe("could not write the pins");
    fail = false;
    output.setTarget([0.4], 0);
    await settle();
    expect(driver.duties).toEqual([0.4]);
    expect(lines.map((l) => l.msg)).toEqual(["could not write the pins", "pin writes work again"]);
  });

  it("retries a failed value: the same target after a failure is written again", async () => {
    const driver = mockDriver([5]);
    const real = driver.write.bind(driver);
    const write = vi.spyOn(driver, "write").mockRejectedValueOnce(new Error("EIO"));
    write.mockImplementation(real);
    const output = new Output(driver, { gamma: 1, logger: silentLogger() });
    await output.open([0]);
    output.setTarget([0.5], 0);
    await settle();
    output.setTarget([0.5], 0);
    await settle();
    expect(write).toHaveBeenCalledTimes(2);
    expect(driver.duties).toEqual([0.5]);
  });
});

// Every fade starts with a flush that writes nothing (the levels have not moved yet at t=0), so the
// bug above wedges the output at the first fade: these fail until it is fixed.
describe("Output: fades", () => {
  function fading(gamma = 1) {
    vi.useFakeTimers();
    const driver = mockDriver([5]);
    const write = vi.spyOn(driver, "write");
    const output = new Output(driver, { gamma, logger: silentLogger(), now: () => Date.now() });
    return { driver, write, output };
  }

  // A fade step's write starts in the step's own timer callback and the mock completes it on the next
  // tick; advancing 1 ms more lets every promise of it settle.
  const landWrite = () => vi.advanceTimersByTimeAsync(1);

  it("is halfway at the midpoint, at the target at the end, and then stops writing", async () => {
    const { driver, write, output } = fading();
    await output.open([0]);
    output.setTarget([1], 1000);
    await vi.advanceTimersByTimeAsync(500);
    expect(output.current[0]).toBeCloseTo(0.5, 9);
    await landWrite();
    expect(driver.duties[0]).toBeCloseTo(0.5, 9);
    await vi.advanceTimersByTimeAsync(499);
    await landWrite();
    expect(output.current).toEqual([1]);
    expect(driver.duties).toEqual([1]);
    const count = write.mock.calls.length;
    // About FADE_HZ steps per second, not one per millisecond, and not a single jump.
    expect(count).toBeGreaterThan(FADE_HZ / 2);
    expect(count).toBeLessThanOrEqual(FADE_HZ + 2);
    await vi.advanceTimersByTimeAsync(2000);
    expect(write.mock.calls.length).toBe(count);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("fades in perceptual levels: gamma applies to the midpoint level", async () => {
    const { driver, output } = fading(2);
    await output.open([0]);
    output.setTarget([1], 1000);
    await vi.advanceTimersByTimeAsync(500);
    await landWrite();
    expect(driver.duties[0]).toBeCloseTo(0.25, 9);
  });

  it("starts a new target mid-fade from where the light is, not from either end", async () => {
    const { driver, output } = fading();
    await output.open([0]);
    output.setTarget([1], 1000);
    await vi.advanceTimersByTimeAsync(500);
    output.setTarget([0], 1000);
    expect(output.current[0]).toBeCloseTo(0.5, 9);
    await vi.advanceTimersByTimeAsync(20);
    await landWrite();
    // Going down from 0.5 by a 50 Hz step: no jump back to 1, nor straight to 0.
    expect(driver.duties[0]).toBeCloseTo(0.49, 9);
    await vi.advanceTimersByTimeAsync(479);
    expect(output.current[0]).toBeCloseTo(0.25, 9);
    await vi.advanceTimersByTimeAsync(501);
    await landWrite();
    expect(driver.duties).toEqual([0]);
  });

  it("an immediate target cancels a running fade", async () => {
    const { driver, write, output } = fading();
    await output.open([0]);
    output.setTarget([1], 1000);
    await vi.advanceTimersByTimeAsync(200);
    output.setTarget([0.3], 0);
    await landWrite();
    expect(driver.duties).toEqual([0.3]);
    const count = write.mock.calls.length;
    await vi.advanceTimersByTimeAsync(1000);
    expect(write.mock.calls.length).toBe(count);
    expect(driver.duties).toEqual([0.3]);
  });

  it("close cancels the fade where it is and stops the ticker", async () => {
    const { write, output } = fading();
    await output.open([0]);
    output.setTarget([1], 1000);
    await vi.advanceTimersByTimeAsync(300);
    await output.close();
    const count = write.mock.calls.length;
    await vi.advanceTimersByTimeAsync(1000);
    expect(write.mock.calls.length).toBe(count);
    expect(vi.getTimerCount()).toBe(0);
    expect(output.current[0]).toBeCloseTo(0.3, 9);
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { MockDriver } from "../../../src/drivers/mock.js";
import { parseCommand } from "../../../src/lamp/command.js";
import { Lamp } from "../../../src/lamp/lamp.js";
import { Output } from "../../../src/lamp/output.js";
import { makeState } from "../../../src/lamp/state.js";
import { silentLogger } from "../../helpers/log.js";

const command = (json: object) => parseCommand(Buffer.from(JSON.stringify(json)));

async function build() {
  const logger = silentLogger();
  const driver = new MockDriver({
    pins: [19, 26, 13],
    activeLow: false,
    frequency: 1000,
    sysfsRoot: "/sys",
    logger,
  });
  const saved: unknown[] = [];
  const lamp = new Lamp(new Output(driver, { gamma: 1, logger }), 3, makeState(true, 0, 0, 0.5), 0, (s) =>
    saved.push(s),
  );
  await lamp.open();
  return { driver, lamp, saved };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("identify", () => {
  it("blinks full and off for about 5 s, then shows the state again; nothing stored, no state change", async () => {
    vi.useFakeTimers();
    const { driver, lamp, saved } = await build();
    expect(lamp.apply(command({ identify: true }))).toBeUndefined();
    const seen: number[] = [];
    for (let t = 0; t < 5200; t += 250) {
      await vi.advanceTimersByTimeAsync(250);
      seen.push(driver.duties[0] ?? -1);
    }
    expect(seen.filter((d) => d === 1).length).toBeGreaterThanOrEqual(8);
    expect(seen.filter((d) => d === 0).length).toBeGreaterThanOrEqual(8);
    expect(lamp.identifying).toBe(false);
    expect(driver.duties).toEqual([0.5, 0.5, 0.5]);
    expect(saved).toEqual([]);
  });

  it("a command during the blink ends it at once and wins", async () => {
    vi.useFakeTimers();
    const { driver, lamp } = await build();
    lamp.apply(command({ identify: true }));
    await vi.advanceTimersByTimeAsync(600);
    expect(lamp.apply(command({ brightness: 0.2 }))?.brightness).toBe(0.2);
    await vi.advanceTimersByTimeAsync(10);
    expect(lamp.identifying).toBe(false);
    expect(driver.duties).toEqual([0.2, 0.2, 0.2]);
    await vi.advanceTimersByTimeAsync(6000);
    expect(driver.duties).toEqual([0.2, 0.2, 0.2]);
  });

  it("identify with other fields applies them and shows them after the blink", async () => {
    vi.useFakeTimers();
    const { driver, lamp } = await build();
    expect(lamp.apply(command({ identify: true, brightness: 0.8 }))?.brightness).toBe(0.8);
    await vi.advanceTimersByTimeAsync(6000);
    expect(driver.duties).toEqual([0.8, 0.8, 0.8]);
  });

  it("refuses identify that is not a boolean, naming it", () => {
    expect(() => command({ identify: "yes" })).toThrow(/identify must be a boolean/);
  });
});

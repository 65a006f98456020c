import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Driver, DriverError, type DriverModule, type DriverOptions } from "../../src/drivers/driver.js";

/**
 * One behaviour every driver shares, run against each backend it can reach (node-serialport's
 * abstract binding test, MQTT.js's abstract_client): the fake always, real pins only on request.
 */
export interface Rig {
  readonly module: DriverModule;
  readonly sysfsRoot: string;
  /**
   * How bright the LED on `pin` looked after each change the driver made to it, 0..1, in order,
   * given the wiring (`activeLow`). Starts at the driver's first visible change.
   */
  seen(pin: number, activeLow: boolean): readonly number[];
  /** Real pins go dark when released; the mock has no pins, and keeps its last duties on record. */
  readonly darkOnClose: boolean;
  /** True when the pins are handed back to the system (unexported, terminated, closed). */
  released(pins: readonly number[], activeLow: boolean): boolean;
  dispose(): void | Promise<void>;
}

export interface SuiteCase {
  readonly label: string;
  readonly pins: readonly number[];
}

export const quietLogger = pino({ level: "silent" });

export function optionsFor(rig: Rig, pins: readonly number[], activeLow: boolean): DriverOptions {
  return { pins, activeLow, frequency: 1000, sysfsRoot: rig.sysfsRoot, logger: quietLogger };
}

async function rejectsWith(promise: Promise<unknown>, code: DriverError["code"]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a DriverError ${code}`).toBeInstanceOf(DriverError);
  expect((error as DriverError).code).toBe(code);
}

export function driverSuite(
  name: string,
  makeRig: () => Rig | Promise<Rig>,
  cases: readonly SuiteCase[],
  { dimmable }: { dimmable: boolean },
): void {
  // Duties chosen to be exact on every backend's resolution (pigpio DMA: 500 steps at 1 kHz).
  const initialFor = (n: number): number[] => [0.25, 0, 1, 0.5].slice(0, n);
  const laterFor = (n: number): number[] => [0.5, 0.8, 0, 0.1].slice(0, n);
  const looks = (duty: number): number => (dimmable ? duty : duty > 0 ? 1 : 0);

  describe(`driver suite: ${name}`, () => {
    let rig: Rig;
    let driver: Driver | undefined;
    beforeEach(async () => {
      rig = await makeRig();
    });
    afterEach(async () => {
      await driver?.close();
      driver = undefined;
      await rig.dispose();
    });

    for (const { label, pins } of cases) {
      for (const activeLow of [false, true]) {
        const wiring = activeLow ? "active-low" : "active-high";
        const open = async (): Promise<Driver> => {
          driver = rig.module.create(optionsFor(rig, pins, activeLow));
          await driver.open(initialFor(pins.length));
          return driver;
        };

        describe(`${label} (${wiring})`, () => {
          it("probe says it can run here", async () => {
            const availability = await rig.module.probe(optionsFor(rig, pins, activeLow));
            expect(availability).toMatchObject({ ok: true });
          });

          it("no flash: the first thing each LED shows is the initial duty", async () => {
            const d = await open();
            expect(d.name).toBe(rig.module.name);
            expect(d.dimmable).toBe(dimmable);
            const initial = initialFor(pins.length);
            pins.forEach((pin, i) => {
              const seen = rig.seen(pin, activeLow);
              expect(seen.length, `pin ${pin} was never driven`).toBeGreaterThan(0);
              expect(seen[0], `pin ${pin} first showed ${seen[0]}`).toBeCloseTo(looks(initial[i] ?? 0), 2);
              expect(seen.at(-1)).toBeCloseTo(looks(initial[i] ?? 0), 2);
            });
          });

          it("writes reach the LEDs, and an unchanged write changes nothing", async () => {
            const d = await open();
            const later = laterFor(pins.length);
            await d.write(later);
            pins.forEach((pin, i) => {
              expect(rig.seen(pin, activeLow).at(-1), `pin ${pin}`).toBeCloseTo(looks(later[i] ?? 0), 2);
            });
            const counts = pins.map((pin) => rig.seen(pin, activeLow).length);
            await d.write(later);
            expect(pins.map((pin) => rig.seen(pin, activeLow).length)).toEqual(counts);
          });

          it("close leaves every LED dark and hands the pins back; a second close does nothing", async () => {
            const d = await open();
            await d.write(pins.map(() => 1));
            await d.close();
            if (rig.darkOnClose) {
              for (const pin of pins) expect(rig.seen(pin, activeLow).at(-1), `pin ${pin}`).toBe(0);
            }
            expect(rig.released(pins, activeLow)).toBe(true);
            const counts = pins.map((pin) => rig.seen(pin, activeLow).length);
            await d.close();
            expect(pins.map((pin) => rig.seen(pin, activeLow).length)).toEqual(counts);
          });

          it("refuses writes before open and after close, a second open, and reopening", async () => {
            const d = rig.module.create(optionsFor(rig, pins, activeLow));
            driver = d;
            await rejectsWith(d.write(pins.map(() => 0)), "closed");
            await d.open(initialFor(pins.length));
            await rejectsWith(d.open(initialFor(pins.length)), "already_open");
            await d.close();
            await rejectsWith(d.write(pins.map(() => 0)), "closed");
            await rejectsWith(d.open(initialFor(pins.length)), "closed");
          });

          it("refuses duties outside 0..1 or of the wrong count, and changes nothing", async () => {
            const d = await open();
            const counts = pins.map((pin) => rig.seen(pin, activeLow).length);
            for (const bad of [Number.NaN, 1.5, -0.1, Number.POSITIVE_INFINITY]) {
              await rejectsWith(d.write(pins.map(() => bad)), "invalid_duty");
            }
            await rejectsWith(d.write([...pins.map(() => 0), 0]), "invalid_duty");
            expect(pins.map((pin) => rig.seen(pin, activeLow).length)).toEqual(counts);
          });

          it("refuses a bad initial duty without claiming the pins", async () => {
            const d = rig.module.create(optionsFor(rig, pins, activeLow));
            driver = d;
            await rejectsWith(d.open(pins.map(() => 2)), "invalid_duty");
            for (const pin of pins) expect(rig.seen(pin, activeLow)).toEqual([]);
          });
        });
      }
    }
  });
}

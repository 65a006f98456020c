import { describe, expect, it } from "vitest";
import type { DriverName } from "../../src/drivers/driver.js";
import { loadDriver } from "../../src/drivers/index.js";
import { quietLogger } from "./driver-suite.js";

/**
 * Real pins, only when asked: on a Pi with an LED wired per hardware/README.md,
 *
 *   LAMP_REAL_GPIO=1 LAMP_REAL_DRIVER=sysfs-pwm LAMP_REAL_PINS=18 npx vitest run test/drivers/real-gpio.test.ts
 *
 * (LAMP_REAL_ACTIVE_LOW=1 for a common-anode LED driven directly; pigpio needs sudo). The LED fades
 * up and down twice and ends dark: watch it.
 */
const enabled = process.env.LAMP_REAL_GPIO === "1";
const name = (process.env.LAMP_REAL_DRIVER ?? "sysfs-pwm") as DriverName;
const pins = (process.env.LAMP_REAL_PINS ?? "18").split(",").map(Number);

// Skipped, the report says why: the reason is in the name.
const skipped = enabled ? "" : " (skipped: needs a Pi with an LED and LAMP_REAL_GPIO=1, see this file's top)";

describe("real GPIO", () => {
  it.skipIf(!enabled)(
    `${name} on pins ${pins.join(",")}: probe, fade, close dark${skipped}`,
    async () => {
      const module = await loadDriver(name);
      const options = {
        pins,
        activeLow: process.env.LAMP_REAL_ACTIVE_LOW === "1",
        frequency: 1000,
        sysfsRoot: "/sys",
        logger: quietLogger,
      };
      const availability = await module.probe(options);
      expect(availability, JSON.stringify(availability)).toMatchObject({ ok: true });
      const driver = module.create(options);
      await driver.open(pins.map(() => 0));
      for (let round = 0; round < 2; round++) {
        for (let step = 0; step <= 40; step++) {
          const duty = (step <= 20 ? step : 40 - step) / 20;
          await driver.write(pins.map(() => duty ** 2.2));
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
      }
      await driver.close();
    },
    20_000,
  );
});

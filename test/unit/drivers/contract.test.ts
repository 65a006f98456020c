import { describe, expect, it } from "vitest";
import { bestEffort, PinAccess } from "../../../src/drivers/contract.js";
import { DriverError } from "../../../src/drivers/driver.js";
import { captureLogger } from "../../helpers/log.js";

describe("PinAccess: the open and close every driver shares", () => {
  it("open: a failed claim is released once, leaves the pins closed, and is a DriverError of the driver", async () => {
    const access = new PinAccess("onoff");
    const released: string[] = [];
    const opening = access.open(
      "onoff driver",
      async () => {
        throw new Error("EACCES: /sys/class/gpio/export");
      },
      async () => {
        released.push("released");
      },
    );
    await expect(opening).rejects.toThrow(
      new DriverError("io", "onoff driver: EACCES: /sys/class/gpio/export"),
    );
    expect(released).toEqual(["released"]);
    expect(access.isOpen).toBe(false);
    await expect(
      access.open(
        "onoff driver",
        async () => {},
        async () => {},
      ),
    ).rejects.toMatchObject({
      code: "closed",
    });
  });

  it("close: releases the first time only, and writes are refused after it", async () => {
    const access = new PinAccess("mock");
    await access.open(
      "mock driver",
      async () => {},
      async () => {},
    );
    expect(() => access.checkWrite([19], [0.5])).not.toThrow();
    let releases = 0;
    await access.close(async () => {
      releases++;
    });
    await access.close(async () => {
      releases++;
    });
    expect(releases).toBe(1);
    expect(() => access.checkWrite([19], [0.5])).toThrow(/write while pins are closed/);
  });

  it("checkWrite: one duty in 0..1 per pin", async () => {
    const access = new PinAccess("sysfs-pwm");
    await access.open(
      "sysfs-pwm driver",
      async () => {},
      async () => {},
    );
    expect(() => access.checkWrite([19, 26, 13], [0.5])).toThrow("sysfs-pwm driver: 1 duties for 3 pins");
    expect(() => access.checkWrite([19], [1.5])).toThrow("sysfs-pwm driver: duty 1.5 is outside 0..1");
  });
});

describe("bestEffort", () => {
  it("logs a failed step with its pin and goes on", async () => {
    const { logger, lines } = captureLogger();
    const steps: string[] = [];
    await bestEffort(logger, 26, "onoff: unexport", () => {
      throw new Error("EBUSY");
    });
    await bestEffort(logger, 13, "onoff: unexport", () => steps.push("next"));
    expect(steps).toEqual(["next"]);
    expect(lines).toMatchObject([{ level: 40, pin: 26, err: "EBUSY", msg: "onoff: unexport failed" }]);
  });
});

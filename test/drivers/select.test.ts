import { afterEach, describe, expect, it } from "vitest";
import type { DriverModule } from "../../src/drivers/driver.js";
import { describeSelection, loadDriver, selectDriver } from "../../src/drivers/index.js";
import { pigpioDriver } from "../../src/drivers/pigpio.js";
import {
  buildTree,
  LAPTOP,
  PI4_LAMPI_66,
  PI5_KERNEL_612,
  PI5_LAMPI_612,
  removeTree,
  type TreeSpec,
} from "../helpers/fake-sysfs.js";
import { optionsFor, type Rig } from "./driver-suite.js";

describe("auto: the best driver that works here, and why", () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) removeTree(root);
  });
  const options = (spec: TreeSpec, pins: number[]) => {
    const root = buildTree(spec);
    roots.push(root);
    return optionsFor({ sysfsRoot: root } as Rig, pins, false);
  };

  it("off a Pi: the mock, with every candidate's reason", async () => {
    const selection = await selectDriver("auto", options(LAPTOP, [19, 26, 13]));
    expect(selection.module.name).toBe("mock");
    expect(selection.availability).toEqual({
      ok: true,
      detail: "not a Raspberry Pi: using the mock driver, no pins are driven",
    });
    expect(selection.tried.map((t) => t.name)).toEqual(["sysfs-pwm", "pigpio", "onoff"]);
    for (const { availability } of selection.tried) {
      expect(!availability.ok && availability.reason).toMatch(/not a Raspberry Pi \(no .*model\)$/);
    }
    expect(describeSelection(selection)).toBe(
      "mock: not a Raspberry Pi: using the mock driver, no pins are driven",
    );
  });

  it("every pin on a hardware-timed kernel channel: sysfs-pwm first, pigpio not even probed", async () => {
    const selection = await selectDriver("auto", options(PI5_LAMPI_612, [19, 26, 13]));
    expect(selection.module.name).toBe("sysfs-pwm");
    expect(selection.tried.map((t) => t.name)).toEqual(["sysfs-pwm"]);
    expect(describeSelection(selection)).toBe(
      "sysfs-pwm: kernel PWM pwmchip2 (1f00098000.pwm), 19->pwm3, 13->pwm1; pwmchip3 (pwm_pio@1a, pwm-pio), 26->pwm0, 1000 Hz",
    );
  });

  it("some pin on pwm-gpio: pigpio's DMA when it can run, else sysfs-pwm, saying why", async () => {
    const opts = options(PI4_LAMPI_66, [19, 26, 13]);
    const pigpioOk: DriverModule = { ...pigpioDriver, probe: async () => ({ ok: true, detail: "DMA PWM" }) };
    const withPigpio = await selectDriver("auto", opts, async (name) =>
      name === "pigpio" ? pigpioOk : loadDriver(name),
    );
    expect(withPigpio.module.name).toBe("pigpio");
    expect(describeSelection(withPigpio)).toBe(
      "pigpio: DMA PWM (skipped sysfs-pwm: usable, but some pin would be software PWM (pwm-gpio))",
    );
    const pigpioNo: DriverModule = {
      ...pigpioDriver,
      probe: async () => ({ ok: false, reason: "pigpio: needs root" }),
    };
    const without = await selectDriver("auto", opts, async (name) =>
      name === "pigpio" ? pigpioNo : loadDriver(name),
    );
    expect(without.module.name).toBe("sysfs-pwm");
    expect(describeSelection(without)).toBe(
      "sysfs-pwm: kernel PWM pwmchip1 (fe20c000.pwm), 19->pwm1; pwmchip2 (pwm_gpio@1a, pwm-gpio software PWM), 26->pwm0; " +
        "pwmchip3 (pwm_gpio@d, pwm-gpio software PWM), 13->pwm0, 1000 Hz (skipped pigpio: needs root)",
    );
  });

  it("on a Pi 5 with the SoC PWM only for these pins: sysfs-pwm", async () => {
    const selection = await selectDriver("auto", options(PI5_KERNEL_612, [12, 13, 18]));
    expect(selection.module.name).toBe("sysfs-pwm");
    expect(describeSelection(selection)).toBe(
      "sysfs-pwm: kernel PWM pwmchip1 (1f00098000.pwm), 12->pwm0, 13->pwm1, 18->pwm2, 1000 Hz",
    );
  });

  it("on a Pi where nothing works: not ok, every reason listed, rather than a silently dark lamp", async () => {
    const selection = await selectDriver("auto", options({ ...PI5_KERNEL_612, gpioChips: [] }, [26]));
    expect(selection.availability.ok).toBe(false);
    const reason = !selection.availability.ok ? selection.availability.reason : "";
    expect(reason).toMatch(
      /^no GPIO driver works on this Raspberry Pi: sysfs-pwm: .*pin 26.*dtoverlay=pwm-pio,gpio=26.*; pigpio: .*; onoff: no pinctrl/,
    );
  });

  it("a named driver is probed and returned even when it cannot run, for --check to explain", async () => {
    const selection = await selectDriver("pigpio", options(PI5_KERNEL_612, [18]));
    expect(selection.module.name).toBe("pigpio");
    expect(selection.availability.ok).toBe(false);
    expect(selection.tried).toEqual([]);
  });
});

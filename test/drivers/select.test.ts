import { afterEach, describe, expect, it } from "vitest";
import { describeSelection, selectDriver } from "../../src/drivers/index.js";
import { buildTree, LAPTOP, PI5_KERNEL_612, removeTree, type TreeSpec } from "../helpers/fake-sysfs.js";
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
    expect(selection.tried.map((t) => t.name)).toEqual(["pigpio", "sysfs-pwm", "onoff"]);
    for (const { availability } of selection.tried) {
      expect(!availability.ok && availability.reason).toMatch(/not a Raspberry Pi \(no .*model\)$/);
    }
    expect(describeSelection(selection)).toBe(
      "mock: not a Raspberry Pi: using the mock driver, no pins are driven",
    );
  });

  it("on a Pi 5 with PWM pins: sysfs-pwm, after pigpio says the Pi 5 is not supported", async () => {
    const selection = await selectDriver("auto", options(PI5_KERNEL_612, [12, 13, 18]));
    expect(selection.module.name).toBe("sysfs-pwm");
    expect(describeSelection(selection)).toBe(
      "sysfs-pwm: kernel PWM pwmchip1 (1f00098000.pwm), 12->pwm0, 13->pwm1, 18->pwm2, 1000 Hz " +
        "(skipped pigpio: the Raspberry Pi 5 Model B Rev 1.0 is not supported by pigpio (joan2937/pigpio#589); use GPIO_DRIVER=sysfs-pwm)",
    );
  });

  it("on a Pi where nothing works: not ok, every reason listed, rather than a silently dark lamp", async () => {
    const selection = await selectDriver("auto", options({ ...PI5_KERNEL_612, gpioChips: [] }, [26]));
    expect(selection.availability.ok).toBe(false);
    const reason = !selection.availability.ok ? selection.availability.reason : "";
    expect(reason).toMatch(
      /^no GPIO driver works on this Raspberry Pi: pigpio: .*; sysfs-pwm: .*pin 26.*; onoff: no pinctrl/,
    );
  });

  it("a named driver is probed and returned even when it cannot run, for --check to explain", async () => {
    const selection = await selectDriver("pigpio", options(PI5_KERNEL_612, [18]));
    expect(selection.module.name).toBe("pigpio");
    expect(selection.availability.ok).toBe(false);
    expect(selection.tried).toEqual([]);
  });
});

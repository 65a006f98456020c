import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { hardwarePwmPins, pwmChannelFor, pwmPinProblems } from "../../src/drivers/board.js";
import { DriverError } from "../../src/drivers/driver.js";
import { createSysfsPwmModule, sysfsPwmDriver } from "../../src/drivers/sysfs-pwm.js";
import {
  buildTree,
  FakeKernel,
  type FakeKernelOptions,
  LAPTOP,
  PI3_KERNEL_61,
  PI4_KERNEL_61,
  PI4_KERNEL_66,
  PI4_MODEL,
  PI5_KERNEL_612,
  PI5_MODEL,
  removeTree,
  type TreeSpec,
} from "../helpers/fake-sysfs.js";
import { driverSuite, optionsFor, quietLogger, type Rig } from "./driver-suite.js";

/** The rig: a fake tree, the fake kernel over it, and the real driver with the kernel as its IO. */
function sysfsRig(spec: TreeSpec, kernelOptions: FakeKernelOptions = {}): Rig & { kernel: FakeKernel } {
  const root = buildTree(spec);
  const kernel = new FakeKernel(root, kernelOptions);
  const model = spec.model;
  const device = (spec.pwmChips ?? []).find(
    (c) => c.device === "1f00098000.pwm" || c.device.endsWith("20c000.pwm"),
  )?.device as string;
  return {
    kernel,
    module: createSysfsPwmModule({ io: kernel, settleMs: 1000 }),
    sysfsRoot: root,
    darkOnClose: true,
    seen(pin, activeLow) {
      const samples = kernel.outputs(device, pwmChannelFor(model, pin) ?? -1);
      // From the first moment the channel runs: before that the pin shows whatever it did at boot.
      const first = samples.findIndex((s) => s.output !== "idle");
      if (first < 0) return [];
      const looks = samples.slice(first).map((s) => {
        // A disabled channel idles low: dark when active-high, lit when active-low.
        const high = s.output === "idle" ? 0 : s.output;
        return Math.round((activeLow ? 1 - high : high) * 1e6) / 1e6;
      });
      return looks.filter((v, i) => i === 0 || v !== looks[i - 1]);
    },
    released(pins, activeLow) {
      const chip = kernel.writes.find((w) => w.file.endsWith("/export"))?.file ?? "";
      return pins.every((pin) => {
        const channel = pwmChannelFor(model, pin);
        const dir = path.join(root, path.dirname(chip), `pwm${channel}`);
        // Active-low channels stay exported and running at 100% high (dark): see SysfsPwmDriver.release.
        return activeLow ? readFileSync(path.join(dir, "enable"), "utf8").trim() === "1" : !exists(dir);
      });
    },
    dispose: () => removeTree(root),
  };
}

function exists(file: string): boolean {
  try {
    readFileSync(path.join(file, "enable"));
    return true;
  } catch {
    return false;
  }
}

driverSuite(
  "sysfs-pwm, Pi 5 on 6.12 (decoy fan PWM is pwmchip0)",
  () => sysfsRig(PI5_KERNEL_612),
  [
    { label: "RGB on 12, 13, 18", pins: [12, 13, 18] },
    { label: "mono on 19", pins: [19] },
  ],
  { dimmable: true },
);

driverSuite(
  "sysfs-pwm, Pi 4 on 6.6, udev needs 60 ms after export",
  () => sysfsRig(PI4_KERNEL_66, { permissionDelayMs: 60 }),
  [{ label: "two channels on 18 and 13", pins: [18, 13] }],
  { dimmable: true },
);

driverSuite("sysfs-pwm, Pi 4 on 6.1", () => sysfsRig(PI4_KERNEL_61), [{ label: "mono on 18", pins: [18] }], {
  dimmable: true,
});

driverSuite("sysfs-pwm, Pi 3 on 6.1", () => sysfsRig(PI3_KERNEL_61), [{ label: "mono on 12", pins: [12] }], {
  dimmable: true,
});

describe("sysfs-pwm specifics", () => {
  const roots: string[] = [];
  const rig = (spec: TreeSpec, kernelOptions?: FakeKernelOptions) => {
    const r = sysfsRig(spec, kernelOptions);
    roots.push(r.sysfsRoot);
    return r;
  };
  afterEach(() => {
    for (const root of roots.splice(0)) removeTree(root);
  });

  it("maps pins to channels by board model", () => {
    expect([12, 13, 18, 19].map((pin) => pwmChannelFor(PI5_MODEL, pin))).toEqual([0, 1, 2, 3]);
    expect([12, 13, 18, 19].map((pin) => pwmChannelFor(PI4_MODEL, pin))).toEqual([0, 1, 0, 1]);
    expect(pwmChannelFor(PI4_MODEL, 26)).toBeUndefined();
    expect(pwmChannelFor(null, 18)).toBeUndefined();
    expect(hardwarePwmPins(PI5_MODEL)).toEqual([12, 13, 18, 19]);
  });

  it("names the pins that would work when a pin has no channel, and pins sharing one", () => {
    expect(pwmPinProblems(PI5_MODEL, [19, 26, 13])).toEqual([
      `LED_PINS: pin 26 has no hardware PWM channel on a ${PI5_MODEL}; pins that work: 12, 13, 18, 19`,
    ]);
    const pi4 = pwmPinProblems(PI4_MODEL, [19, 26, 13]);
    expect(pi4[0]).toContain("pin 26 has no hardware PWM channel");
    expect(pi4[0]).toContain("at most two: one of 12/18 and one of 13/19");
    expect(pi4[1]).toBe(
      `LED_PINS: pins 19 and 13 share PWM channel 1 on a ${PI4_MODEL} and would always show the same brightness; use one of them`,
    );
    expect(pwmPinProblems(PI4_MODEL, [18, 19])).toEqual([]);
  });

  it("probe explains itself: laptop, pin without a channel, missing overlay", async () => {
    const laptop = rig(LAPTOP);
    const p = (r: Rig, pins: number[]) => sysfsPwmDriver.probe(optionsFor(r, pins, false));
    expect(await p(laptop, [18])).toEqual({
      ok: false,
      reason: `sysfs-pwm: not a Raspberry Pi (no ${laptop.sysfsRoot}/firmware/devicetree/base/model)`,
    });
    const pi5 = rig(PI5_KERNEL_612);
    const noChannel = await p(pi5, [19, 26, 13]);
    expect(noChannel.ok).toBe(false);
    expect(!noChannel.ok && noChannel.reason).toContain("pin 26 has no hardware PWM channel");
    expect(!noChannel.ok && noChannel.reason).toContain("pins that work: 12, 13, 18, 19");
    const noOverlay = rig({ ...PI4_KERNEL_66, pwmChips: [] });
    const result = await p(noOverlay, [18]);
    expect(!result.ok && result.reason).toContain("no PWM chip for 7e20c000.pwm");
    expect(!result.ok && result.reason).toContain("dtoverlay=pwm-2chan,pin=18,func=2,pin2=19,func2=2");
  });

  it("probe on the Pi 5 names the RP1 PWM0 chip, not the fan's", async () => {
    const pi5 = rig(PI5_KERNEL_612);
    const availability = await sysfsPwmDriver.probe(optionsFor(pi5, [12, 13, 18], false));
    expect(availability).toEqual({
      ok: true,
      detail: "kernel PWM pwmchip1 (1f00098000.pwm), 12->pwm0, 13->pwm1, 18->pwm2, 1000 Hz",
    });
  });

  it("never touches the decoy chip", async () => {
    const pi5 = rig(PI5_KERNEL_612);
    const driver = pi5.module.create(optionsFor(pi5, [12, 13, 18, 19], false));
    await driver.open([0.1, 0.2, 0.3, 0.4]);
    await driver.close();
    expect(pi5.kernel.writes.length).toBeGreaterThan(0);
    expect(pi5.kernel.writes.every((w) => w.file.includes("1f00098000.pwm/pwm/pwmchip1/"))).toBe(true);
  });

  it("reuses a channel already exported and running, shrinking the duty before the period", async () => {
    // A previous run at 100 Hz left pwm0 enabled at 60% (6 ms of a 10 ms period).
    const spec: TreeSpec = {
      ...PI4_KERNEL_66,
      pwmChips: [
        {
          index: 0,
          device: "fe20c000.pwm",
          parent: "platform/soc",
          npwm: 2,
          exported: { 0: { period: 10_000_000, duty_cycle: 6_000_000, enable: 1 } },
        },
      ],
    };
    const r = rig(spec);
    const driver = r.module.create(optionsFor(r, [18], false));
    await driver.open([0.5]);
    const writes = r.kernel.writes.map((w) => `${path.basename(w.file)}=${w.value}`);
    expect(writes).toEqual(["duty_cycle=500000", "period=1000000", "enable=1"]);
    await driver.close();
    // Not ours to unexport: disabled, but left exported for whoever set it up.
    expect(r.kernel.writes.map((w) => path.basename(w.file))).not.toContain("unexport");
    expect(r.kernel.writes.at(-1)).toMatchObject({ value: "0" });
  });

  it("puts an inverted channel back to normal polarity while it is disabled", async () => {
    const spec: TreeSpec = {
      ...PI4_KERNEL_61,
      pwmChips: [
        {
          index: 0,
          device: "fe20c000.pwm",
          parent: "platform/soc",
          npwm: 2,
          exported: { 1: { period: 1_000_000, duty_cycle: 0, enable: 1, polarity: "inversed" } },
        },
      ],
    };
    const r = rig(spec);
    const driver = r.module.create(optionsFor(r, [19], false));
    await driver.open([0.25]);
    expect(r.seen(19, false)).toEqual([0.25]);
    await driver.close();
  });

  it("waits for udev after export, and gives up with a clear error when the channel never appears", async () => {
    const slow = rig(PI4_KERNEL_66, { permissionDelayMs: 150 });
    const driver = slow.module.create(optionsFor(slow, [18], false));
    const started = Date.now();
    await driver.open([0.5]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(slow.seen(18, false)).toEqual([0.5]);
    await driver.close();

    const broken = rig(PI4_KERNEL_66, { exportCreatesNothing: true });
    const stuck = createSysfsPwmModule({ io: broken.kernel, settleMs: 100 }).create(
      optionsFor(broken, [18], false),
    );
    const error = await stuck.open([0.5]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriverError);
    expect((error as DriverError).message).toMatch(
      /pwm0 did not appear within 100 ms of writing 0 to pwmchip0\/export/,
    );
    await stuck.close();
  });

  it("open on a laptop fails as unavailable with the probe's reason", async () => {
    const laptop = rig(LAPTOP);
    const driver = laptop.module.create({ ...optionsFor(laptop, [18], false), logger: quietLogger });
    await expect(driver.open([0])).rejects.toMatchObject({
      code: "unavailable",
      message: /not a Raspberry Pi/,
    });
  });
});

import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { pwmChannelFor } from "../../src/drivers/board.js";
import { DriverError } from "../../src/drivers/driver.js";
import { assignChannels, describeChannel, listPwmChips, pinFromGpios } from "../../src/drivers/pwm-chips.js";
import { createSysfsPwmModule, snapForPio, sysfsPwmDriver } from "../../src/drivers/sysfs-pwm.js";
import {
  buildTree,
  FakeKernel,
  type FakeKernelOptions,
  LAPTOP,
  lampChannel,
  PI3_KERNEL_61,
  PI3_MODEL,
  PI4_BARE_66,
  PI4_KERNEL_61,
  PI4_KERNEL_66,
  PI4_LAMPI_66,
  PI4_MODEL,
  PI5_BARE_612,
  PI5_KERNEL_612,
  PI5_LAMPI_612,
  PI5_MODEL,
  PI5_PIO_ONLY_612,
  perPinChip,
  removeTree,
  type TreeSpec,
  ZERO2_BARE_612,
  ZERO2_LAMPI_612,
} from "../helpers/fake-sysfs.js";
import { driverSuite, optionsFor, quietLogger, type Rig } from "./driver-suite.js";

/** The rig: a fake tree, the fake kernel over it, and the real driver with the kernel as its IO. */
function sysfsRig(spec: TreeSpec, kernelOptions: FakeKernelOptions = {}): Rig & { kernel: FakeKernel } {
  const root = buildTree(spec);
  const kernel = new FakeKernel(root, kernelOptions);
  const where = (pin: number) => {
    const at = lampChannel(spec, pin);
    if (!at) throw new Error(`the test tree gives pin ${pin} no channel`);
    return at;
  };
  return {
    kernel,
    module: createSysfsPwmModule({ io: kernel, settleMs: 1000 }),
    sysfsRoot: root,
    darkOnClose: true,
    seen(pin, activeLow) {
      const { chip, channel } = where(pin);
      const samples = kernel.outputs(chip.device, channel);
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
      return pins.every((pin) => {
        const { chip, channel } = where(pin);
        const dir = path.join(root, "class", "pwm", `pwmchip${chip.index}`, `pwm${channel}`);
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

const LAMPI = { label: "LAMPI: red 19, green 26, blue 13", pins: [19, 26, 13] };

driverSuite(
  "sysfs-pwm, Pi 5 on 6.12: RP1 PWM0 for 19/13, pwm-pio for 26, decoy fan PWM and pwm-pio on 5",
  () => sysfsRig(PI5_LAMPI_612),
  [LAMPI],
  { dimmable: true },
);

driverSuite("sysfs-pwm, Pi 5 on 6.12: pwm-pio on every pin", () => sysfsRig(PI5_PIO_ONLY_612), [LAMPI], {
  dimmable: true,
});

driverSuite(
  "sysfs-pwm, Pi 4 on 6.6.62: SoC PWM for 19, pwm-gpio for 26 and 13, udev needs 60 ms",
  () => sysfsRig(PI4_LAMPI_66, { permissionDelayMs: 60 }),
  [LAMPI, { label: "mono on 26 (pwm-gpio)", pins: [26] }],
  { dimmable: true },
);

driverSuite(
  "sysfs-pwm, Pi Zero 2 W on 6.12: SoC PWM for 13, pwm-gpio for 19 and 26",
  () => sysfsRig(ZERO2_LAMPI_612),
  [LAMPI],
  { dimmable: true },
);

driverSuite(
  "sysfs-pwm, Pi 3 on 6.12: as the Zero 2 (same BCM2837)",
  () => sysfsRig({ ...ZERO2_LAMPI_612, model: PI3_MODEL }),
  [LAMPI],
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

  it("maps pins to SoC channels by board model", () => {
    expect([12, 13, 18, 19].map((pin) => pwmChannelFor(PI5_MODEL, pin))).toEqual([0, 1, 2, 3]);
    expect([12, 13, 18, 19].map((pin) => pwmChannelFor(PI4_MODEL, pin))).toEqual([0, 1, 0, 1]);
    expect(pwmChannelFor(PI4_MODEL, 26)).toBeUndefined();
    expect(pwmChannelFor(null, 18)).toBeUndefined();
  });

  it("finds per-pin chips by their device-tree node, whatever their number", async () => {
    const pi5 = rig(PI5_LAMPI_612);
    const chips = await listPwmChips(pi5.sysfsRoot, pi5.kernel);
    expect(chips.map((c) => [c.name, c.device, c.npwm, c.pin ?? null, c.compatible ?? null])).toEqual([
      ["pwmchip0", "1f0009c000.pwm", 4, null, "raspberrypi,rp1-pwm"],
      ["pwmchip1", "pwm_pio@5", 1, 5, "raspberrypi,pwm-pio-rp1"],
      ["pwmchip2", "1f00098000.pwm", 4, null, "raspberrypi,rp1-pwm"],
      ["pwmchip3", "pwm_pio@1a", 1, 26, "raspberrypi,pwm-pio-rp1"],
    ]);
    const assignment = assignChannels(PI5_MODEL, [19, 26, 13], chips);
    expect(assignment.missing).toEqual([]);
    expect(assignment.channels.map((c) => c && describeChannel(c))).toEqual([
      "pin 19: pwmchip2 channel 3 (1f00098000.pwm, soc, hardware PWM)",
      "pin 26: pwmchip3 channel 0 (pwm_pio@1a, pwm-pio, hardware PWM)",
      "pin 13: pwmchip2 channel 1 (1f00098000.pwm, soc, hardware PWM)",
    ]);
  });

  it("reads the pin from the gpios cells first, from the node's unit address when there are none", async () => {
    // The node name says 0x1a, the gpios property says 21: the property wins.
    const spec: TreeSpec = {
      ...PI4_KERNEL_66,
      pwmChips: [
        {
          ...perPinChip("pwm-gpio", 0, 26),
          node: { path: "pwm_gpio@1a", compatible: "pwm-gpio", gpios: [1, 21, 0] },
        },
      ],
    };
    const r = rig(spec);
    expect((await listPwmChips(r.sysfsRoot, r.kernel))[0]?.pin).toBe(21);
    rmSync(path.join(r.sysfsRoot, "firmware", "devicetree", "base", "pwm_gpio@1a", "gpios"));
    expect((await listPwmChips(r.sysfsRoot, r.kernel))[0]?.pin).toBe(26);
    expect(pinFromGpios(Uint8Array.from([0, 0, 0, 1, 0, 0, 0, 19, 0, 0, 0, 0]))).toBe(19);
    // Two GPIOs in one property is not a per-pin chip.
    expect(pinFromGpios(new Uint8Array(24))).toBeUndefined();
  });

  it("works on any board whose kernel shows per-pin chips, Pi or not", async () => {
    const board: TreeSpec = {
      model: "linux,dummy-virt",
      pwmChips: [perPinChip("pwm-gpio", 0, 19), perPinChip("pwm-gpio", 1, 26), perPinChip("pwm-gpio", 2, 13)],
    };
    const r = rig(board);
    expect(await sysfsPwmDriver.probe(optionsFor(r, [19, 26, 13], false))).toEqual({
      ok: true,
      detail:
        "kernel PWM pwmchip0 (pwm_gpio@13, pwm-gpio software PWM), 19->pwm0; " +
        "pwmchip1 (pwm_gpio@1a, pwm-gpio software PWM), 26->pwm0; " +
        "pwmchip2 (pwm_gpio@d, pwm-gpio software PWM), 13->pwm0, 1000 Hz",
      softwareTimed: true,
    });
    const driver = r.module.create(optionsFor(r, [19, 26, 13], false));
    await driver.open([0.2, 0.4, 0.6]);
    expect(r.kernel.outputs("pwm_gpio@1a", 0).at(-1)?.output).toBeCloseTo(0.4, 6);
    await driver.close();
    const missing = await sysfsPwmDriver.probe(optionsFor(r, [19, 6], false));
    expect(!missing.ok && missing.reason).toBe(
      "sysfs-pwm: no PWM channel for pin 6 (no PWM chip drives it); no PWM chip drives GPIO 6: give each " +
        'its own in the device tree, a node with `compatible = "pwm-gpio"` and `gpios = <&gpio N 0>` ' +
        "(as the Raspberry Pi pwm-gpio overlay adds)",
    );
  });

  it("gives a shared SoC channel to one pin only", async () => {
    const pi4 = rig(PI4_KERNEL_66);
    const assignment = assignChannels(PI4_MODEL, [19, 13], await listPwmChips(pi4.sysfsRoot, pi4.kernel));
    expect(assignment.channels[0]).toMatchObject({ pin: 19, channel: 1, kind: "soc" });
    expect(assignment.channels[1]).toBeUndefined();
    expect(assignment.missing).toEqual([
      {
        pin: 13,
        why: "shares 7e20c000.pwm (fe20c000.pwm on a Pi 4, 3f20c000.pwm on a Pi 3) channel 1 with pin 19",
      },
    ]);
    expect(assignment.fix.configLines).toEqual(["dtoverlay=pwm-gpio,gpio=13"]);
  });

  it("names the config.txt lines that give every LAMPI pin a channel, per board", async () => {
    const lines = async (spec: TreeSpec) => {
      const r = rig(spec);
      return assignChannels(spec.model, [19, 26, 13], await listPwmChips(r.sysfsRoot, r.kernel)).fix
        .configLines;
    };
    expect(await lines(PI5_BARE_612)).toEqual([
      "dtoverlay=pwm-pio,gpio=19",
      "dtoverlay=pwm-pio,gpio=26",
      "dtoverlay=pwm-pio,gpio=13",
    ]);
    // RP1 PWM0 already routed to 19 and 13 by pwm-2chan: only 26 is left.
    expect(await lines(PI5_KERNEL_612)).toEqual(["dtoverlay=pwm-pio,gpio=26"]);
    const pi0to4 = [
      "dtoverlay=pwm,pin=19,func=2",
      "dtoverlay=pwm-gpio,gpio=26",
      "dtoverlay=pwm-gpio,gpio=13",
      "dtparam=audio=off",
    ];
    expect(await lines(PI4_BARE_66)).toEqual(pi0to4);
    expect(await lines(ZERO2_BARE_612)).toEqual(pi0to4);
    expect(await lines({ ...ZERO2_BARE_612, model: PI3_MODEL })).toEqual(pi0to4);
    // The SoC block already there (pwm-2chan): no second line for it.
    expect(await lines(PI4_KERNEL_66)).toEqual(["dtoverlay=pwm-gpio,gpio=26", "dtoverlay=pwm-gpio,gpio=13"]);
    // Four pwm-pio instances at most on a Pi 5: the decoy on 5 takes one.
    const r = rig({ ...PI5_BARE_612, pwmChips: [perPinChip("pwm-pio", 0, 5)] });
    const chips = await listPwmChips(r.sysfsRoot, r.kernel);
    expect(assignChannels(PI5_MODEL, [12, 13, 18, 19], chips).fix.configLines).toEqual([
      "dtoverlay=pwm-pio,gpio=12",
      "dtoverlay=pwm-pio,gpio=13",
      "dtoverlay=pwm-pio,gpio=18",
      "dtoverlay=pwm-gpio,gpio=19",
    ]);
  });

  it("probe explains itself: laptop, pins without a channel and the lines that fix them", async () => {
    const laptop = rig(LAPTOP);
    const p = (r: Rig, pins: number[]) => sysfsPwmDriver.probe(optionsFor(r, pins, false));
    expect(await p(laptop, [18])).toEqual({
      ok: false,
      reason: `sysfs-pwm: not a Raspberry Pi (no ${laptop.sysfsRoot}/firmware/devicetree/base/model)`,
    });
    const pi5 = rig(PI5_KERNEL_612);
    expect(await p(pi5, [19, 26, 13])).toEqual({
      ok: false,
      reason:
        "sysfs-pwm: no PWM channel for pin 26 (no PWM chip drives it); add to /boot/firmware/config.txt " +
        "and reboot: dtoverlay=pwm-pio,gpio=26 (hardware/README.md)",
    });
    const noOverlay = rig(PI4_BARE_66);
    const result = await p(noOverlay, [18]);
    expect(!result.ok && result.reason).toBe(
      "sysfs-pwm: no PWM channel for pin 18 (no PWM chip drives it); add to /boot/firmware/config.txt " +
        "and reboot: dtoverlay=pwm,pin=18,func=2; dtparam=audio=off (hardware/README.md)",
    );
  });

  it("never writes a pwm-pio duty within 15 ns of 0 or of the period (EINVAL before PR #7133)", async () => {
    const pi5 = rig(PI5_PIO_ONLY_612);
    const driver = pi5.module.create(optionsFor(pi5, [19, 26, 13], false));
    // At 1 kHz (1 000 000 ns): 0.000004 is 4 ns, 0.00001 is 10 ns, 0.999992 is 8 ns short of the period.
    await driver.open([0.000004, 0.00001, 0.999992]);
    await driver.write([0.999996, 0.5, 0.000012]);
    const duties = pi5.kernel.writes.filter((w) => w.file.endsWith("duty_cycle")).map((w) => Number(w.value));
    expect(duties).toEqual([0, 15, 999_985, 1_000_000, 500_000, 15]);
    for (const d of duties) expect(d === 0 || d === 1_000_000 || (d >= 15 && d <= 999_985)).toBe(true);
    await driver.close();
    expect(snapForPio(7, 1_000_000)).toBe(0);
    expect(snapForPio(999_993, 1_000_000)).toBe(1_000_000);
    expect(snapForPio(999_992, 1_000_000)).toBe(999_985);
  });

  it("the fake kernel refuses what the real one does: a second channel on a per-pin chip, 10 ns on pwm-pio", async () => {
    const pi5 = rig(PI5_PIO_ONLY_612);
    const chip = path.join(pi5.sysfsRoot, "class", "pwm", "pwmchip2");
    await expect(pi5.kernel.writeFile(path.join(chip, "export"), "1")).rejects.toMatchObject({
      code: "EINVAL",
    });
    await pi5.kernel.writeFile(path.join(chip, "export"), "0");
    await pi5.kernel.writeFile(path.join(chip, "pwm0", "period"), "1000000");
    await expect(pi5.kernel.writeFile(path.join(chip, "pwm0", "duty_cycle"), "10")).rejects.toMatchObject({
      code: "EINVAL",
    });
    const fixed = new FakeKernel(pi5.sysfsRoot, { pwmPioRounds: true });
    await fixed.writeFile(path.join(chip, "pwm0", "duty_cycle"), "10");
  });

  it("never touches a decoy chip: the fan's PWM, a pwm-pio or pwm-gpio chip of another pin", async () => {
    for (const [spec, lamp] of [
      [PI5_LAMPI_612, ["1f00098000.pwm/pwm/pwmchip2/", "pwm_pio@1a/pwm/pwmchip3/"]],
      [PI4_LAMPI_66, ["fe20c000.pwm/pwm/pwmchip1/", "pwm_gpio@1a/pwm/pwmchip2/", "pwm_gpio@d/pwm/pwmchip3/"]],
      [
        ZERO2_LAMPI_612,
        ["3f20c000.pwm/pwm/pwmchip0/", "pwm_gpio@1a/pwm/pwmchip2/", "pwm_gpio@13/pwm/pwmchip3/"],
      ],
    ] as const) {
      const r = rig(spec);
      const driver = r.module.create(optionsFor(r, [19, 26, 13], false));
      await driver.open([0.1, 0.2, 0.3]);
      await driver.write([0.4, 0.5, 0.6]);
      await driver.close();
      expect(r.kernel.writes.length).toBeGreaterThan(0);
      for (const w of r.kernel.writes)
        expect(
          lamp.some((dir) => w.file.includes(dir)),
          w.file,
        ).toBe(true);
    }
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

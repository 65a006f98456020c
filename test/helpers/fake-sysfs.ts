import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { nodeSysfs, type SysfsIO } from "../../src/drivers/sysfs.js";

/**
 * Fake `/sys` trees in a temp dir, shaped like the real ones: `class/pwm/pwmchipN` and
 * `class/gpio/gpiochipN` are symlinks into `devices/`, `pwmchipN/device` points at the chip's platform
 * device, and that device's `of_node` at its node under `firmware/devicetree/base`, which is how the
 * driver has to find the right chip.
 */
export interface PwmChipSpec {
  readonly index: number;
  /** Platform device name, e.g. `fe20c000.pwm` or `pwm_pio@1a`. */
  readonly device: string;
  /** Where the device sits under `devices/`, e.g. `platform/soc`. */
  readonly parent: string;
  readonly npwm: number;
  /** The device-tree node, as `of_node` shows it. */
  readonly node?: NodeSpec;
  /** Channels already exported before the agent starts (by a previous run, or a boot script). */
  readonly exported?: Readonly<Record<number, Partial<ChannelFiles>>>;
}

export interface NodeSpec {
  /** Path under `/proc/device-tree`, e.g. `soc/pwm@7e20c000` or `pwm_pio@1a`. */
  readonly path: string;
  readonly compatible: string;
  /** One GPIO specifier `<phandle pin flags>`, written big-endian as the kernel shows it. */
  readonly gpios?: readonly [number, number, number];
}

export interface ChannelFiles {
  period: number;
  duty_cycle: number;
  enable: 0 | 1;
  polarity: "normal" | "inversed";
}

export interface GpioChipSpec {
  readonly base: number;
  readonly label: string;
  readonly ngpio: number;
}

export interface TreeSpec {
  /** The device-tree model; null for a machine without one (a laptop). */
  readonly model: string | null;
  readonly pwmChips?: readonly PwmChipSpec[];
  readonly gpioChips?: readonly GpioChipSpec[];
}

export const PI4_MODEL = "Raspberry Pi 4 Model B Rev 1.4";
export const PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0";
export const PI3_MODEL = "Raspberry Pi 3 Model B Plus Rev 1.3";
export const ZERO2_MODEL = "Raspberry Pi Zero 2 W Rev 1.0";

/** The phandle of the GPIO controller in `gpios`: any value; the driver must not care. */
const GPIO_PHANDLE = 0x1b;

/** drivers/pwm/pwm-pio-rp1.c: one PIO cycle at RP1's clock. */
const PWM_PIO_STEP_NS = 15;

/**
 * A per-pin chip as `dtoverlay=pwm-pio,gpio=N` (Pi 5) or `dtoverlay=pwm-gpio,gpio=N` makes it: a node
 * at the tree's root named after the pin in hex, a platform device of the same name, one channel
 * (raspberrypi/linux overlays pwm-pio-overlay.dts, pwm-gpio-overlay.dts; drivers/pwm/pwm-pio-rp1.c and
 * pwm-gpio.c register npwm = 1).
 */
export function perPinChip(kind: "pwm-pio" | "pwm-gpio", index: number, pin: number): PwmChipSpec {
  const name = `${kind.replace("-", "_")}@${pin.toString(16)}`;
  return {
    index,
    device: name,
    parent: "platform",
    npwm: 1,
    node: {
      path: name,
      compatible: kind === "pwm-pio" ? "raspberrypi,pwm-pio-rp1" : "pwm-gpio",
      gpios: [GPIO_PHANDLE, pin, 0],
    },
  };
}

const bcmPwm = (index: number, device: string): PwmChipSpec => ({
  index,
  device,
  parent: "platform/soc",
  npwm: 2,
  node: { path: `soc/pwm@7e${device.slice(-10, -4)}`, compatible: "brcm,bcm2835-pwm" },
});

const rp1Pwm = (index: number, unit: "98000" | "9c000"): PwmChipSpec => ({
  index,
  device: `1f000${unit}.pwm`,
  parent: "platform/axi/1000120000.pcie",
  npwm: 4,
  node: { path: `axi/pcie@120000/rp1/pwm@${unit}`, compatible: "raspberrypi,rp1-pwm" },
});

/** Raspberry Pi OS Bookworm's first kernel: GPIO numbers start at 0. */
export const PI4_KERNEL_61: TreeSpec = {
  model: PI4_MODEL,
  pwmChips: [bcmPwm(0, "fe20c000.pwm")],
  gpioChips: [
    { base: 0, label: "pinctrl-bcm2711", ngpio: 58 },
    { base: 504, label: "raspberrypi-exp-gpio", ngpio: 8 },
  ],
};

/** From 6.6 the bases are allocated from 512 up (fivdi/onoff#200). */
export const PI4_KERNEL_66: TreeSpec = {
  model: PI4_MODEL,
  pwmChips: [bcmPwm(0, "fe20c000.pwm")],
  gpioChips: [
    { base: 512, label: "pinctrl-bcm2711", ngpio: 58 },
    { base: 570, label: "raspberrypi-exp-gpio", ngpio: 8 },
  ],
};

/**
 * A Pi 5 on 6.12: the fan's RP1 PWM1 registered first as pwmchip0 (the decoy: same driver, same
 * channel count), the header's RP1 PWM0 as pwmchip1; the header pins' gpiochip is pinctrl-rp1 at 571,
 * after the SoC's own gpio-brcmstb chips.
 */
export const PI5_KERNEL_612: TreeSpec = {
  model: PI5_MODEL,
  pwmChips: [rp1Pwm(0, "9c000"), rp1Pwm(1, "98000")],
  gpioChips: [
    { base: 512, label: "gpio-brcmstb@107d508500", ngpio: 32 },
    { base: 544, label: "gpio-brcmstb@107d508520", ngpio: 4 },
    { base: 548, label: "gpio-brcmstb@107d517c00", ngpio: 17 },
    { base: 565, label: "gpio-brcmstb@107d517c20", ngpio: 6 },
    { base: 571, label: "pinctrl-rp1", ngpio: 54 },
  ],
};

export const PI3_KERNEL_61: TreeSpec = {
  model: PI3_MODEL,
  pwmChips: [bcmPwm(0, "3f20c000.pwm")],
  gpioChips: [{ base: 0, label: "pinctrl-bcm2835", ngpio: 54 }],
};

/**
 * The LAMPI wiring (red 19, green 26, blue 13) set up as `lamp-agent --check` advises, one tree per
 * board, each with decoys: a fan's PWM and a per-pin chip for a pin the lamp does not use, registered
 * before the lamp's chips so that no chip number is where a naive driver would look.
 *
 * Pi 5 on 6.12: `dtoverlay=pwm-2chan,pin=19,func=2,pin2=13,func2=4` (RP1 PWM0 channels 3 and 1) and
 * `dtoverlay=pwm-pio,gpio=26`; a pwm-pio instance on GPIO 5 for something else; the fan on RP1 PWM1.
 */
export const PI5_LAMPI_612: TreeSpec = {
  ...PI5_KERNEL_612,
  pwmChips: [
    rp1Pwm(0, "9c000"),
    perPinChip("pwm-pio", 1, 5),
    rp1Pwm(2, "98000"),
    perPinChip("pwm-pio", 3, 26),
  ],
};

/** The same Pi 5 with nothing but pwm-pio: `dtoverlay=pwm-pio,gpio=N` for 19, 26 and 13. */
export const PI5_PIO_ONLY_612: TreeSpec = {
  ...PI5_KERNEL_612,
  pwmChips: [
    rp1Pwm(0, "9c000"),
    perPinChip("pwm-pio", 1, 19),
    perPinChip("pwm-pio", 2, 26),
    perPinChip("pwm-pio", 3, 13),
  ],
};

/**
 * Pi 4 on 6.6.62+ (Bookworm's current kernel): `dtoverlay=pwm,pin=19,func=2` (SoC channel 1),
 * `dtoverlay=pwm-gpio,gpio=26`, `dtoverlay=pwm-gpio,gpio=13`; a case fan on pwm-gpio 14, probed first.
 */
export const PI4_LAMPI_66: TreeSpec = {
  ...PI4_KERNEL_66,
  pwmChips: [
    perPinChip("pwm-gpio", 0, 14),
    bcmPwm(1, "fe20c000.pwm"),
    perPinChip("pwm-gpio", 2, 26),
    perPinChip("pwm-gpio", 3, 13),
  ],
};

/**
 * Pi Zero 2 W on 6.12 (Trixie): SoC channel 1 on 13 this time (`dtoverlay=pwm,pin=13,func=4`), pwm-gpio
 * for 19 and 26, and a pwm-gpio fan on GPIO 4.
 */
export const ZERO2_LAMPI_612: TreeSpec = {
  model: ZERO2_MODEL,
  pwmChips: [
    bcmPwm(0, "3f20c000.pwm"),
    perPinChip("pwm-gpio", 1, 4),
    perPinChip("pwm-gpio", 2, 26),
    perPinChip("pwm-gpio", 3, 19),
  ],
  gpioChips: [{ base: 512, label: "pinctrl-bcm2835", ngpio: 54 }],
};

/**
 * Where pin `pin`'s light comes from in `spec`, worked out from the spec alone (never by the driver's
 * own code), so tests can read the channel the LED is on.
 */
export function lampChannel(spec: TreeSpec, pin: number): { chip: PwmChipSpec; channel: number } | undefined {
  const chips = spec.pwmChips ?? [];
  const own = chips.find((c) => c.npwm === 1 && c.node?.gpios?.[1] === pin);
  if (own) return { chip: own, channel: 0 };
  const soc = chips.find((c) => c.device === "1f00098000.pwm" || c.device.endsWith("20c000.pwm"));
  const channel = soc?.device.startsWith("1f")
    ? ({ 12: 0, 13: 1, 18: 2, 19: 3 } as Record<number, number>)[pin]
    : ({ 12: 0, 18: 0, 13: 1, 19: 1 } as Record<number, number>)[pin];
  return soc && channel !== undefined ? { chip: soc, channel } : undefined;
}

/** The same boards before any overlay: what `--check` has to fix. Only the decoys are there. */
export const PI5_BARE_612: TreeSpec = { ...PI5_KERNEL_612, pwmChips: [rp1Pwm(0, "9c000")] };
export const PI4_BARE_66: TreeSpec = { ...PI4_KERNEL_66, pwmChips: [perPinChip("pwm-gpio", 0, 14)] };
export const ZERO2_BARE_612: TreeSpec = { ...ZERO2_LAMPI_612, pwmChips: [perPinChip("pwm-gpio", 0, 4)] };

export const LAPTOP: TreeSpec = { model: null };

function channelFiles(dir: string, files: Partial<ChannelFiles> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "period"), `${files.period ?? 0}\n`);
  writeFileSync(path.join(dir, "duty_cycle"), `${files.duty_cycle ?? 0}\n`);
  writeFileSync(path.join(dir, "enable"), `${files.enable ?? 0}\n`);
  writeFileSync(path.join(dir, "polarity"), `${files.polarity ?? "normal"}\n`);
}

function driverOf(chip: PwmChipSpec): string {
  const compatible = chip.node?.compatible;
  if (compatible === "raspberrypi,pwm-pio-rp1") return "pwm-pio-rp1";
  if (compatible === "pwm-gpio") return "pwm-gpio";
  return chip.device.startsWith("1f") ? "rp1-pwm" : "bcm2835-pwm";
}

/** Properties as the kernel shows them: strings NUL-terminated, cells big-endian u32. */
function writeNode(dir: string, node: NodeSpec): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "name"), `${path.basename(node.path).split("@")[0]}\0`);
  writeFileSync(path.join(dir, "compatible"), `${node.compatible}\0`);
  if (node.gpios) {
    const cells = Buffer.alloc(4 * node.gpios.length);
    for (const [i, cell] of node.gpios.entries()) cells.writeUInt32BE(cell, 4 * i);
    writeFileSync(path.join(dir, "gpios"), cells);
  }
}

/** Builds the tree in a new temp dir and returns its root (what SYSFS_ROOT would be). */
export function buildTree(spec: TreeSpec): string {
  const root = mkdtempSync(path.join(tmpdir(), "lamp-sysfs-"));
  if (spec.model !== null) {
    const base = path.join(root, "firmware", "devicetree", "base");
    mkdirSync(base, { recursive: true });
    writeFileSync(path.join(base, "model"), `${spec.model}\0`);
  }
  mkdirSync(path.join(root, "class", "pwm"), { recursive: true });
  for (const chip of spec.pwmChips ?? []) {
    const deviceDir = path.join(root, "devices", chip.parent, chip.device);
    const chipDir = path.join(deviceDir, "pwm", `pwmchip${chip.index}`);
    mkdirSync(chipDir, { recursive: true });
    writeFileSync(
      path.join(deviceDir, "uevent"),
      `DRIVER=${driverOf(chip)}\nOF_COMPATIBLE_0=${chip.node?.compatible ?? ""}\n`,
    );
    writeFileSync(path.join(chipDir, "npwm"), `${chip.npwm}\n`);
    writeFileSync(path.join(chipDir, "export"), "");
    writeFileSync(path.join(chipDir, "unexport"), "");
    symlinkSync("../..", path.join(chipDir, "device"));
    if (chip.node) {
      const nodeDir = path.join(root, "firmware", "devicetree", "base", chip.node.path);
      writeNode(nodeDir, chip.node);
      symlinkSync(path.relative(deviceDir, nodeDir), path.join(deviceDir, "of_node"));
    }
    symlinkSync(
      path.relative(path.join(root, "class", "pwm"), chipDir),
      path.join(root, "class", "pwm", `pwmchip${chip.index}`),
    );
    for (const [channel, files] of Object.entries(chip.exported ?? {})) {
      channelFiles(path.join(chipDir, `pwm${channel}`), files);
    }
  }
  const gpioClass = path.join(root, "class", "gpio");
  mkdirSync(gpioClass, { recursive: true });
  writeFileSync(path.join(gpioClass, "export"), "");
  writeFileSync(path.join(gpioClass, "unexport"), "");
  for (const chip of spec.gpioChips ?? []) {
    const chipDir = path.join(
      root,
      "devices",
      "platform",
      "soc",
      `gpio-${chip.base}`,
      "gpio",
      `gpiochip${chip.base}`,
    );
    mkdirSync(chipDir, { recursive: true });
    writeFileSync(path.join(chipDir, "base"), `${chip.base}\n`);
    writeFileSync(path.join(chipDir, "label"), `${chip.label}\n`);
    writeFileSync(path.join(chipDir, "ngpio"), `${chip.ngpio}\n`);
    symlinkSync(path.relative(gpioClass, chipDir), path.join(gpioClass, `gpiochip${chip.base}`));
  }
  return root;
}

export function removeTree(root: string): void {
  rmSync(root, { recursive: true, force: true });
}

function errno(code: string, syscall: string, file: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: fake kernel, ${syscall} '${file}'`), {
    code,
    syscall,
    path: file,
  });
}

/** What one PWM channel's output did, after each write that reached it. */
export interface OutputSample {
  /** Fraction of time the pin is high, or "idle" when the channel is disabled (the pin idles low). */
  readonly output: number | "idle";
  readonly file: string;
}

export interface FakeKernelOptions {
  /** For this long after `export`, writes into the new `pwmN/` fail with EACCES (udev not done yet). */
  readonly permissionDelayMs?: number;
  /** `export` creates nothing: a kernel without the channel, to test the bounded wait. */
  readonly exportCreatesNothing?: boolean;
  /**
   * A kernel with raspberrypi/linux PR #7133: pwm-pio rounds a duty near 0 or the period instead of
   * refusing it. Without it (every 6.12 kernel before November 2025), a duty in (0, 15) or
   * (period - 15, period) ns is EINVAL (#7131).
   */
  readonly pwmPioRounds?: boolean;
}

/**
 * The kernel side of `/sys/class/pwm`, as a SysfsIO over a real tree: `export`/`unexport` create and
 * remove `pwmN/`, writes are checked as the PWM core checks them (duty <= period, period > 0 to enable,
 * polarity only while disabled, channel < npwm, which is 1 on per-pin chips; pwm-pio's 15 ns rule),
 * files are written through so tests and the agent can read them, and every write is logged.
 */
export class FakeKernel implements SysfsIO {
  readonly writes: { file: string; value: string }[] = [];
  private readonly settling = new Map<string, number>();
  private readonly samples = new Map<string, OutputSample[]>();

  constructor(
    readonly root: string,
    private readonly options: FakeKernelOptions = {},
  ) {}

  readFile(file: string): Promise<string> {
    return nodeSysfs.readFile(file);
  }
  readBytes(file: string): Promise<Uint8Array> {
    return nodeSysfs.readBytes(file);
  }
  readdir(dir: string): Promise<string[]> {
    return nodeSysfs.readdir(dir);
  }
  realpath(file: string): Promise<string> {
    return nodeSysfs.realpath(file);
  }
  exists(file: string): Promise<boolean> {
    return nodeSysfs.exists(file);
  }
  async checkWritable(file: string): Promise<void> {
    this.refuseWhileSettling(file, "access");
    await nodeSysfs.checkWritable(file);
  }

  /** Output samples of channel `channel` of the chip whose device is `device`. */
  outputs(device: string, channel: number): OutputSample[] {
    return this.samples.get(`${device}/${channel}`) ?? [];
  }

  async writeFile(file: string, data: string): Promise<void> {
    const value = data.trim();
    const real = await this.resolve(file);
    this.refuseWhileSettling(real, "open");
    const control = /\/(pwmchip\d+)\/(export|unexport)$/.exec(real);
    const attribute = /\/(pwmchip\d+)\/pwm(\d+)\/(period|duty_cycle|enable|polarity)$/.exec(real);
    if (control) await this.control(real, control[2] as "export" | "unexport", value);
    else if (attribute) await this.attribute(real, Number(attribute[2]), attribute[3] ?? "", value);
    else await fsp.writeFile(real, data);
    this.writes.push({ file: path.relative(this.root, real), value });
  }

  private async resolve(file: string): Promise<string> {
    try {
      return await fsp.realpath(file);
    } catch {
      throw errno("ENOENT", "open", file);
    }
  }

  private refuseWhileSettling(file: string, syscall: string): void {
    for (const [dir, until] of this.settling) {
      if (file.startsWith(`${dir}/`) && Date.now() < until) throw errno("EACCES", syscall, file);
    }
  }

  private async control(file: string, action: "export" | "unexport", value: string): Promise<void> {
    const chipDir = path.dirname(file);
    const channel = Number(value);
    const npwm = Number((await fsp.readFile(path.join(chipDir, "npwm"), "utf8")).trim());
    if (!/^\d+$/.test(value) || channel >= npwm) throw errno("EINVAL", "write", file);
    const dir = path.join(chipDir, `pwm${channel}`);
    const exists = await nodeSysfs.exists(dir);
    if (action === "export") {
      if (exists) throw errno("EBUSY", "write", file);
      if (this.options.exportCreatesNothing) return;
      channelFiles(dir);
      if (this.options.permissionDelayMs) this.settling.set(dir, Date.now() + this.options.permissionDelayMs);
    } else {
      if (!exists) throw errno("ENODEV", "write", file);
      await fsp.rm(dir, { recursive: true });
    }
  }

  private async isPwmPio(channelDir: string): Promise<boolean> {
    const compatible = path.join(channelDir, "..", "device", "of_node", "compatible");
    return (await fsp.readFile(compatible, "utf8").catch(() => "")).startsWith("raspberrypi,pwm-pio-rp1");
  }

  private async attribute(file: string, channel: number, name: string, value: string): Promise<void> {
    const dir = path.dirname(file);
    const read = async (attr: string) => (await fsp.readFile(path.join(dir, attr), "utf8")).trim();
    const period = Number(await read("period"));
    const duty = Number(await read("duty_cycle"));
    const enabled = (await read("enable")) === "1";
    const number = Number(value);
    switch (name) {
      case "period":
        if (!/^\d+$/.test(value) || number === 0 || number < duty) throw errno("EINVAL", "write", file);
        break;
      case "duty_cycle":
        if (!/^\d+$/.test(value) || number > period) throw errno("EINVAL", "write", file);
        if ((await this.isPwmPio(dir)) && !this.options.pwmPioRounds) {
          const nearEdge = (n: number) => n > 0 && n < PWM_PIO_STEP_NS;
          if (nearEdge(number) || nearEdge(period - number)) throw errno("EINVAL", "write", file);
        }
        break;
      case "enable":
        if (value !== "0" && value !== "1") throw errno("EINVAL", "write", file);
        if (value === "1" && period === 0) throw errno("EINVAL", "write", file);
        break;
      case "polarity":
        if (value !== "normal" && value !== "inversed") throw errno("EINVAL", "write", file);
        if (enabled) throw errno("EBUSY", "write", file);
        break;
    }
    await fsp.writeFile(file, `${value}\n`);
    const deviceName = path.basename(await fsp.realpath(path.join(dir, "..", "device")));
    const nowEnabled = (await read("enable")) === "1";
    const nowPeriod = Number(await read("period"));
    const nowDuty = Number(await read("duty_cycle"));
    const inversed = (await read("polarity")) === "inversed";
    const high = nowPeriod > 0 ? nowDuty / nowPeriod : 0;
    const key = `${deviceName}/${channel}`;
    const list = this.samples.get(key) ?? [];
    list.push({ output: nowEnabled ? (inversed ? 1 - high : high) : "idle", file: name });
    this.samples.set(key, list);
  }
}

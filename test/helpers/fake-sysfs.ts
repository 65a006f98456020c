import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { nodeSysfs, type SysfsIO } from "../../src/drivers/sysfs.js";

/**
 * Fake `/sys` trees in a temp dir, shaped like the real ones: `class/pwm/pwmchipN` and
 * `class/gpio/gpiochipN` are symlinks into `devices/`, and `pwmchipN/device` points at the PWM block's
 * platform device, which is how the driver has to find the right chip.
 */
export interface PwmChipSpec {
  readonly index: number;
  /** Platform device name, e.g. `fe20c000.pwm`. */
  readonly device: string;
  /** Where the device sits under `devices/`, e.g. `platform/soc`. */
  readonly parent: string;
  readonly npwm: number;
  /** Channels already exported before the agent starts (by a previous run, or a boot script). */
  readonly exported?: Readonly<Record<number, Partial<ChannelFiles>>>;
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

/** Raspberry Pi OS Bookworm's first kernel: GPIO numbers start at 0. */
export const PI4_KERNEL_61: TreeSpec = {
  model: PI4_MODEL,
  pwmChips: [{ index: 0, device: "fe20c000.pwm", parent: "platform/soc", npwm: 2 }],
  gpioChips: [
    { base: 0, label: "pinctrl-bcm2711", ngpio: 58 },
    { base: 504, label: "raspberrypi-exp-gpio", ngpio: 8 },
  ],
};

/** From 6.6 the bases are allocated from 512 up (fivdi/onoff#200). */
export const PI4_KERNEL_66: TreeSpec = {
  model: PI4_MODEL,
  pwmChips: [{ index: 0, device: "fe20c000.pwm", parent: "platform/soc", npwm: 2 }],
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
  pwmChips: [
    { index: 0, device: "1f0009c000.pwm", parent: "platform/axi/1000120000.pcie", npwm: 4 },
    { index: 1, device: "1f00098000.pwm", parent: "platform/axi/1000120000.pcie", npwm: 4 },
  ],
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
  pwmChips: [{ index: 0, device: "3f20c000.pwm", parent: "platform/soc", npwm: 2 }],
  gpioChips: [{ base: 0, label: "pinctrl-bcm2835", ngpio: 54 }],
};

export const LAPTOP: TreeSpec = { model: null };

function channelFiles(dir: string, files: Partial<ChannelFiles> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "period"), `${files.period ?? 0}\n`);
  writeFileSync(path.join(dir, "duty_cycle"), `${files.duty_cycle ?? 0}\n`);
  writeFileSync(path.join(dir, "enable"), `${files.enable ?? 0}\n`);
  writeFileSync(path.join(dir, "polarity"), `${files.polarity ?? "normal"}\n`);
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
      `DRIVER=${chip.device.startsWith("1f") ? "rp1-pwm" : "bcm2835-pwm"}\n`,
    );
    writeFileSync(path.join(chipDir, "npwm"), `${chip.npwm}\n`);
    writeFileSync(path.join(chipDir, "export"), "");
    writeFileSync(path.join(chipDir, "unexport"), "");
    symlinkSync("../..", path.join(chipDir, "device"));
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
}

/**
 * The kernel side of `/sys/class/pwm`, as a SysfsIO over a real tree: `export`/`unexport` create and
 * remove `pwmN/`, writes are checked as the PWM core checks them (duty <= period, period > 0 to enable,
 * polarity only while disabled, channel < npwm), files are written through so tests and the agent can
 * read them, and every write is logged.
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

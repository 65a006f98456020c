import path from "node:path";
import {
  isRaspberryPi,
  notAPi,
  type PwmBlock,
  pwmBlockFor,
  pwmChannelFor,
  pwmPinProblems,
  readBoardModel,
} from "./board.js";
import {
  type Availability,
  type Driver,
  DriverError,
  type DriverModule,
  type DriverOptions,
} from "./driver.js";
import {
  asDriverError,
  type Clock,
  checkDuties,
  describe,
  errnoCode,
  Lifecycle,
  nodeSysfs,
  realClock,
  retryWhileSettling,
  type SysfsIO,
} from "./sysfs.js";

/**
 * The kernel's hardware PWM through `/sys/class/pwm`: plain file writes, no native code, no root with
 * the udev rule in `hardware/`, and the only driver that works on a Raspberry Pi 5.
 *
 * Sysfs PWM ABI (Documentation/ABI/testing/sysfs-class-pwm): `pwmchipN/export` takes a channel number
 * and creates `pwmchipN/pwmM/` with `period` and `duty_cycle` in nanoseconds, `polarity` and `enable`.
 */

export interface SysfsPwmDeps {
  readonly io: SysfsIO;
  readonly clock: Clock;
  /** How long to wait for `pwmN/` to appear and become writable after `export` (udev). */
  readonly settleMs: number;
}

const DEFAULT_DEPS: SysfsPwmDeps = { io: nodeSysfs, clock: realClock, settleMs: 3000 };

export interface PwmChip {
  /** `/sys/class/pwm/pwmchipN` */
  readonly dir: string;
  readonly name: string;
  /** The platform device the chip belongs to, e.g. `1f00098000.pwm`. */
  readonly device: string;
  readonly npwm: number;
}

/**
 * Finds the PWM chip of `block` by the device it belongs to, never by number: the number depends on
 * probe order and moved between kernels (a Pi 5 had `pwmchip2` on 6.6 and `pwmchip0` on later ones, with
 * the fan's RP1 PWM1 taking another number). `device` is a symlink to the parent device.
 */
export async function findPwmChip(sysfsRoot: string, block: PwmBlock, io: SysfsIO): Promise<PwmChip | null> {
  const classDir = path.join(sysfsRoot, "class", "pwm");
  let entries: string[];
  try {
    entries = await io.readdir(classDir);
  } catch {
    return null;
  }
  const chips = entries
    .filter((entry) => /^pwmchip\d+$/.test(entry))
    .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
  for (const name of chips) {
    const dir = path.join(classDir, name);
    let device: string;
    try {
      device = path.basename(await io.realpath(path.join(dir, "device")));
    } catch {
      continue;
    }
    if (!block.matches(device)) continue;
    const npwm = Number.parseInt(await io.readFile(path.join(dir, "npwm")).catch(() => "0"), 10);
    return { dir, name, device, npwm: Number.isFinite(npwm) ? npwm : 0 };
  }
  return null;
}

const PARTNER: Readonly<Record<number, number>> = { 12: 13, 13: 12, 18: 19, 19: 18 };

/** The overlay line that gives `pins` their PWM function (see hardware/README.md for three pins). */
export function overlayHint(block: PwmBlock, pins: readonly number[]): string {
  // `func` is the BCM function-select number: 4 = ALT0 (GPIO 12/13), 2 = ALT5 (GPIO 18/19). The RP1
  // pinctrl driver translates these legacy numbers for the Pi 5 (ALT0 for 12/13, ALT3 for 18/19).
  const funcOf = (pin: number): number => (pin === 12 || pin === 13 ? 4 : 2);
  const usable = pins.filter((pin) => block.channels[pin] !== undefined);
  const a = usable[0] ?? 18;
  const b = usable[1] ?? PARTNER[a] ?? 19;
  return `dtoverlay=pwm-2chan,pin=${a},func=${funcOf(a)},pin2=${b},func2=${funcOf(b)}`;
}

interface Plan {
  readonly chip: PwmChip;
  readonly channels: readonly number[];
  readonly model: string;
}

type PlanResult = { ok: true; plan: Plan } | { ok: false; reason: string };

async function plan(options: DriverOptions, deps: SysfsPwmDeps): Promise<PlanResult> {
  const model = await readBoardModel(options.sysfsRoot);
  if (!isRaspberryPi(model)) {
    return notAPi("sysfs-pwm", options.sysfsRoot, model);
  }
  const problems = pwmPinProblems(model, options.pins);
  if (problems.length > 0) return { ok: false, reason: `sysfs-pwm: ${problems.join("; ")}` };
  const block = pwmBlockFor(model);
  if (!block) return { ok: false, reason: `sysfs-pwm: no PWM block known for "${model}"` };
  const chip = await findPwmChip(options.sysfsRoot, block, deps.io);
  if (!chip) {
    return {
      ok: false,
      reason:
        `sysfs-pwm: no PWM chip for ${block.deviceHint} under ${path.join(options.sysfsRoot, "class", "pwm")}; ` +
        `add \`${overlayHint(block, options.pins)}\` to /boot/firmware/config.txt and reboot (hardware/README.md)`,
    };
  }
  const channels = options.pins.map((pin) => pwmChannelFor(model, pin) ?? -1);
  const missing = channels.filter((channel) => channel >= chip.npwm);
  if (missing.length > 0) {
    return {
      ok: false,
      reason: `sysfs-pwm: ${chip.name} (${chip.device}) has ${chip.npwm} channels, channel ${missing.join(", ")} needed`,
    };
  }
  return { ok: true, plan: { chip, channels, model } };
}

async function checkAccess(p: Plan, deps: SysfsPwmDeps): Promise<string | null> {
  // A channel already exported needs its own files writable; otherwise `export` must be.
  const files: string[] = [];
  for (const channel of p.channels) {
    const dir = path.join(p.chip.dir, `pwm${channel}`);
    if (await deps.io.exists(dir)) files.push(path.join(dir, "duty_cycle"), path.join(dir, "enable"));
    else files.push(path.join(p.chip.dir, "export"));
  }
  for (const file of new Set(files)) {
    try {
      await deps.io.checkWritable(file);
    } catch (error) {
      return (
        `sysfs-pwm: ${file} is not writable (${errnoCode(error) ?? String(error)}) by uid ${process.getuid?.() ?? "?"}: ` +
        "install hardware/99-lamp-agent.rules and add the service user to group gpio, or run as root"
      );
    }
  }
  return null;
}

class Channel {
  /** True when this driver exported the channel, and so unexports it again. */
  exportedByUs = false;
  lastDuty: number | undefined;

  constructor(
    readonly pin: number,
    readonly number: number,
    readonly dir: string,
  ) {}

  file(name: string): string {
    return path.join(this.dir, name);
  }
}

export class SysfsPwmDriver implements Driver {
  readonly name = "sysfs-pwm" as const;
  readonly dimmable = true;
  private readonly life = new Lifecycle("sysfs-pwm");
  private channels: Channel[] = [];
  private chip: PwmChip | undefined;
  private readonly periodNs: number;

  constructor(
    private readonly options: DriverOptions,
    private readonly deps: SysfsPwmDeps = DEFAULT_DEPS,
  ) {
    this.periodNs = Math.round(1e9 / options.frequency);
  }

  async open(initial: readonly number[]): Promise<void> {
    this.life.beginOpen();
    try {
      checkDuties(this.name, this.options.pins, initial);
      const planned = await plan(this.options, this.deps);
      if (!planned.ok) throw new DriverError("unavailable", planned.reason);
      this.chip = planned.plan.chip;
      for (const [i, pin] of this.options.pins.entries()) {
        const number = planned.plan.channels[i] ?? 0;
        const channel = new Channel(pin, number, path.join(this.chip.dir, `pwm${number}`));
        this.channels.push(channel);
        await this.claim(channel, initial[i] ?? 0);
      }
      this.life.opened();
      this.options.logger.debug(
        { chip: this.chip.name, device: this.chip.device, periodNs: this.periodNs },
        "sysfs-pwm: pins open",
      );
    } catch (error) {
      await this.release();
      this.life.failed();
      throw asDriverError(error, "sysfs-pwm driver: cannot open the PWM channels");
    }
  }

  async write(duties: readonly number[]): Promise<void> {
    this.life.assertOpen();
    checkDuties(this.name, this.options.pins, duties);
    for (const [i, channel] of this.channels.entries()) {
      const duty = this.dutyNs(duties[i] ?? 0);
      if (duty === channel.lastDuty) continue;
      try {
        await this.deps.io.writeFile(channel.file("duty_cycle"), String(duty));
      } catch (error) {
        throw new DriverError("io", `sysfs-pwm driver: pin ${channel.pin}: ${describe(error)}`, {
          cause: error,
        });
      }
      channel.lastDuty = duty;
    }
  }

  async close(): Promise<void> {
    if (!this.life.beginClose()) return;
    await this.release();
  }

  /** Logical duty 0..1 -> nanoseconds high. Active-low wiring inverts here, and only here. */
  private dutyNs(duty: number): number {
    const lit = this.options.activeLow ? 1 - duty : duty;
    return Math.round(lit * this.periodNs);
  }

  private async claim(channel: Channel, initial: number): Promise<void> {
    const io = this.deps.io;
    const settle = <T>(step: () => Promise<T>): Promise<T> =>
      retryWhileSettling(step, this.deps.clock, this.deps.settleMs);
    if (!(await io.exists(channel.dir))) {
      try {
        await io.writeFile(path.join(this.chip?.dir ?? "", "export"), String(channel.number));
        channel.exportedByUs = true;
      } catch (error) {
        // EBUSY: someone exported it between our look and our write; use it like any exported channel.
        if (errnoCode(error) !== "EBUSY") throw error;
      }
    }
    // The directory appears, then udev makes its files ours: until then reads fail with ENOENT, writes
    // with EACCES. Reading `enable` and writing it back is how we know both have happened.
    let enabled: boolean;
    try {
      enabled = (await settle(() => io.readFile(channel.file("enable")))).trim() === "1";
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
      throw new DriverError(
        "io",
        `sysfs-pwm driver: ${channel.dir} did not appear within ${this.deps.settleMs} ms of writing ` +
          `${channel.number} to ${this.chip?.name}/export`,
        { cause: error },
      );
    }
    const currentDuty = Number.parseInt(await settle(() => io.readFile(channel.file("duty_cycle"))), 10) || 0;
    const polarity = await io.readFile(channel.file("polarity")).catch(() => "normal");
    if (polarity.trim() === "inversed") {
      // Someone left the channel inverted; our active-low handling is inverted duty, so put it back to
      // normal. The kernel only allows this while the channel is disabled.
      if (enabled) await settle(() => io.writeFile(channel.file("enable"), "0"));
      await settle(() => io.writeFile(channel.file("polarity"), "normal"));
    }
    const duty = this.dutyNs(initial);
    // The kernel rejects a period shorter than the duty cycle already set (EINVAL), and a duty cycle
    // longer than the period: shrink the duty first when the old one would not fit the new period.
    if (currentDuty > this.periodNs) {
      await settle(() => io.writeFile(channel.file("duty_cycle"), String(duty)));
      await settle(() => io.writeFile(channel.file("period"), String(this.periodNs)));
    } else {
      await settle(() => io.writeFile(channel.file("period"), String(this.periodNs)));
      await settle(() => io.writeFile(channel.file("duty_cycle"), String(duty)));
    }
    channel.lastDuty = duty;
    // No flash at start: the pin starts switching only now, already at the restored duty.
    await settle(() => io.writeFile(channel.file("enable"), "1"));
  }

  /** Best effort, every step on its own: one stuck channel must not keep the others lit. */
  private async release(): Promise<void> {
    const io = this.deps.io;
    for (const channel of this.channels) {
      const attempt = async (what: string, step: () => Promise<void>): Promise<void> => {
        try {
          await step();
        } catch (error) {
          this.options.logger.warn({ pin: channel.pin, err: describe(error) }, `sysfs-pwm: ${what} failed`);
        }
      };
      if (this.options.activeLow) {
        // Active-low: a disabled PWM output idles low, and low lights a common-anode LED. Leave the
        // channel running at 100% high, which is dark, and exported: the next start reuses it.
        await attempt("switching off", () => io.writeFile(channel.file("duty_cycle"), String(this.periodNs)));
        continue;
      }
      await attempt("switching off", () => io.writeFile(channel.file("duty_cycle"), "0"));
      await attempt("disabling", () => io.writeFile(channel.file("enable"), "0"));
      // Channels exported by someone else (a boot script that set permissions) are left exported.
      if (channel.exportedByUs && this.chip) {
        const unexport = path.join(this.chip.dir, "unexport");
        await attempt("unexporting", () => io.writeFile(unexport, String(channel.number)));
      }
    }
    this.channels = [];
  }
}

export function createSysfsPwmModule(overrides: Partial<SysfsPwmDeps> = {}): DriverModule {
  const deps: SysfsPwmDeps = { ...DEFAULT_DEPS, ...overrides };
  return {
    name: "sysfs-pwm",
    async probe(options): Promise<Availability> {
      const planned = await plan(options, deps);
      if (!planned.ok) return { ok: false, reason: planned.reason };
      const denied = await checkAccess(planned.plan, deps);
      if (denied) return { ok: false, reason: denied };
      const { chip, channels } = planned.plan;
      const map = options.pins.map((pin, i) => `${pin}->pwm${channels[i]}`).join(", ");
      return {
        ok: true,
        detail: `kernel PWM ${chip.name} (${chip.device}), ${map}, ${options.frequency} Hz`,
      };
    },
    create(options) {
      return new SysfsPwmDriver(options, deps);
    },
  };
}

export const sysfsPwmDriver: DriverModule = createSysfsPwmModule();

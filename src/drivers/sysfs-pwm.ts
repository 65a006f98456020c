import path from "node:path";
import { isRaspberryPi, notAPi, readBoardModel } from "./board.js";
import { bestEffort, checkDuties, errorMessage, PinAccess } from "./contract.js";
import {
  type Availability,
  type Driver,
  DriverError,
  type DriverModule,
  type DriverOptions,
} from "./driver.js";
import {
  type Assignment,
  assignChannels,
  isSoftware,
  listPwmChips,
  type PinChannel,
  type PwmChip,
} from "./pwm-chips.js";
import { type Clock, errnoCode, nodeSysfs, realClock, retryWhileSettling, type SysfsIO } from "./sysfs.js";

/**
 * The kernel's PWM through `/sys/class/pwm`: plain file writes, no native code, no root with the udev
 * rule in `hardware/`, and the only dimmable driver on a Raspberry Pi 5. Each pin gets a channel from
 * any chip that drives it: the SoC's PWM block or a chip of its own (pwm-pio, pwm-gpio); pwm-chips.ts
 * finds them.
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

interface Plan {
  readonly channels: readonly PinChannel[];
}

type PlanResult = { ok: true; plan: Plan } | { ok: false; reason: string; assignment?: Assignment };

/** Where each pin's channel is, from the chips the kernel shows now. */
export async function findChannels(
  options: Pick<DriverOptions, "pins" | "sysfsRoot">,
  io: SysfsIO,
): Promise<{ model: string | null; chips: PwmChip[]; assignment: Assignment }> {
  const model = await readBoardModel(options.sysfsRoot);
  const chips = await listPwmChips(options.sysfsRoot, io);
  return { model, chips, assignment: assignChannels(model, options.pins, chips) };
}

/** The one-paragraph reason for pins without a channel, naming the lines that fix it. */
export function missingReason(assignment: Assignment): string {
  const pins = assignment.missing.map((m) => `pin ${m.pin} (${m.why})`).join(", ");
  const { configLines, advice } = assignment.fix;
  const fix =
    configLines.length > 0
      ? `add to /boot/firmware/config.txt and reboot: ${configLines.join("; ")} (hardware/README.md)`
      : (advice ?? "");
  return `sysfs-pwm: no PWM channel for ${pins}; ${fix}`;
}

async function plan(options: DriverOptions, deps: SysfsPwmDeps): Promise<PlanResult> {
  const { model, assignment } = await findChannels(options, deps.io);
  if (assignment.missing.length === 0) {
    return { ok: true, plan: { channels: assignment.channels.filter((c) => c !== undefined) } };
  }
  // Off a Pi, with no chip for any of the pins, the short answer is the useful one (a laptop).
  if (!isRaspberryPi(model) && assignment.channels.every((c) => c === undefined)) {
    return notAPi("sysfs-pwm", options.sysfsRoot, model);
  }
  return { ok: false, reason: missingReason(assignment), assignment };
}

/** Why this process cannot drive the planned channels, or null when it can. */
export async function checkAccess(channels: readonly PinChannel[], io: SysfsIO): Promise<string | null> {
  // A channel already exported needs its own files writable; otherwise `export` must be.
  const files: string[] = [];
  for (const { chip, channel } of channels) {
    const dir = path.join(chip.dir, `pwm${channel}`);
    if (await io.exists(dir)) files.push(path.join(dir, "duty_cycle"), path.join(dir, "enable"));
    else files.push(path.join(chip.dir, "export"));
  }
  for (const file of new Set(files)) {
    try {
      await io.checkWritable(file);
    } catch (error) {
      return (
        `sysfs-pwm: ${file} is not writable (${errnoCode(error) ?? String(error)}) by uid ${process.getuid?.() ?? "?"}: ` +
        "install hardware/99-lamp-agent.rules and add the service user to group gpio, or run as root"
      );
    }
  }
  return null;
}

/** `pwmchip1 (1f00098000.pwm), 19->pwm3, 13->pwm1; pwmchip2 (pwm_pio@1a, pwm-pio), 26->pwm0` */
function describePlan(channels: readonly PinChannel[]): string {
  const byChip = new Map<string, PinChannel[]>();
  for (const c of channels) byChip.set(c.chip.dir, [...(byChip.get(c.chip.dir) ?? []), c]);
  return [...byChip.values()]
    .map((group) => {
      const first = group[0] as PinChannel;
      const kind =
        first.kind === "soc" ? "" : `, ${first.kind}${isSoftware(first.kind) ? " software PWM" : ""}`;
      const map = group.map((c) => `${c.pin}->pwm${c.channel}`).join(", ");
      return `${first.chip.name} (${first.chip.device}${kind}), ${map}`;
    })
    .join("; ");
}

/**
 * RP1 PIO PWM resolves 15 ns, and before raspberrypi/linux PR #7133 it refuses (EINVAL) a duty within
 * one step of 0 or of the period, though 0 and the period themselves are fine (#7131). Snap to the
 * nearest value every kernel takes.
 */
export const PWM_PIO_STEP_NS = 15;

export function snapForPio(dutyNs: number, periodNs: number): number {
  if (dutyNs > 0 && dutyNs < PWM_PIO_STEP_NS) return dutyNs * 2 < PWM_PIO_STEP_NS ? 0 : PWM_PIO_STEP_NS;
  const gap = periodNs - dutyNs;
  if (gap > 0 && gap < PWM_PIO_STEP_NS)
    return gap * 2 < PWM_PIO_STEP_NS ? periodNs : periodNs - PWM_PIO_STEP_NS;
  return dutyNs;
}

class Channel {
  /** True when this driver exported the channel, and so unexports it again. */
  exportedByUs = false;
  lastDuty: number | undefined;
  readonly dir: string;

  constructor(readonly at: PinChannel) {
    this.dir = path.join(at.chip.dir, `pwm${at.channel}`);
  }

  get pin(): number {
    return this.at.pin;
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  chipFile(name: "export" | "unexport"): string {
    return path.join(this.at.chip.dir, name);
  }
}

export class SysfsPwmDriver implements Driver {
  readonly name = "sysfs-pwm" as const;
  readonly dimmable = true;
  private readonly access = new PinAccess("sysfs-pwm");
  private channels: Channel[] = [];
  private readonly periodNs: number;

  constructor(
    private readonly options: DriverOptions,
    private readonly deps: SysfsPwmDeps = DEFAULT_DEPS,
  ) {
    this.periodNs = Math.round(1e9 / options.frequency);
  }

  open(initial: readonly number[]): Promise<void> {
    return this.access.open(
      "sysfs-pwm driver: cannot open the PWM channels",
      async () => {
        checkDuties(this.name, this.options.pins, initial);
        const planned = await plan(this.options, this.deps);
        if (!planned.ok) throw new DriverError("unavailable", planned.reason);
        for (const [i, at] of planned.plan.channels.entries()) {
          const channel = new Channel(at);
          this.channels.push(channel);
          await this.claim(channel, initial[i] ?? 0);
        }
        this.options.logger.debug(
          { channels: describePlan(planned.plan.channels), periodNs: this.periodNs },
          "sysfs-pwm: pins open",
        );
      },
      () => this.release(),
    );
  }

  async write(duties: readonly number[]): Promise<void> {
    this.access.checkWrite(this.options.pins, duties);
    for (const [i, channel] of this.channels.entries()) {
      const duty = this.dutyNs(channel, duties[i] ?? 0);
      if (duty === channel.lastDuty) continue;
      try {
        await this.deps.io.writeFile(channel.file("duty_cycle"), String(duty));
      } catch (error) {
        throw new DriverError("io", `sysfs-pwm driver: pin ${channel.pin}: ${errorMessage(error)}`, {
          cause: error,
        });
      }
      channel.lastDuty = duty;
    }
  }

  close(): Promise<void> {
    return this.access.close(() => this.release());
  }

  /** Logical duty 0..1 -> nanoseconds high. Active-low wiring inverts here, and only here. */
  private dutyNs(channel: Channel, duty: number): number {
    const lit = this.options.activeLow ? 1 - duty : duty;
    const ns = Math.round(lit * this.periodNs);
    return channel.at.kind === "pwm-pio" ? snapForPio(ns, this.periodNs) : ns;
  }

  private async claim(channel: Channel, initial: number): Promise<void> {
    const io = this.deps.io;
    const settle = <T>(step: () => Promise<T>): Promise<T> =>
      retryWhileSettling(step, this.deps.clock, this.deps.settleMs);
    if (!(await io.exists(channel.dir))) {
      try {
        await io.writeFile(channel.chipFile("export"), String(channel.at.channel));
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
          `${channel.at.channel} to ${channel.at.chip.name}/export`,
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
    const duty = this.dutyNs(channel, initial);
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
      const attempt = (what: string, step: () => Promise<void>) =>
        bestEffort(this.options.logger, channel.pin, `sysfs-pwm: ${what}`, step);
      if (this.options.activeLow) {
        // Active-low: a disabled PWM output idles low, and low lights a common-anode LED. Leave the
        // channel running at 100% high, which is dark, and exported: the next start reuses it.
        await attempt("switching off", () => io.writeFile(channel.file("duty_cycle"), String(this.periodNs)));
        continue;
      }
      await attempt("switching off", () => io.writeFile(channel.file("duty_cycle"), "0"));
      await attempt("disabling", () => io.writeFile(channel.file("enable"), "0"));
      // Channels exported by someone else (a boot script that set permissions) are left exported.
      if (channel.exportedByUs) {
        await attempt("unexporting", () =>
          io.writeFile(channel.chipFile("unexport"), String(channel.at.channel)),
        );
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
      const { channels } = planned.plan;
      const denied = await checkAccess(channels, deps.io);
      if (denied) return { ok: false, reason: denied };
      const detail = `kernel PWM ${describePlan(channels)}, ${options.frequency} Hz`;
      return channels.some((c) => isSoftware(c.kind))
        ? { ok: true, detail, softwareTimed: true }
        : { ok: true, detail };
    },
    create(options) {
      return new SysfsPwmDriver(options, deps);
    },
  };
}

export const sysfsPwmDriver: DriverModule = createSysfsPwmModule();

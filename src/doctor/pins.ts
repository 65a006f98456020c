import { readFile, stat } from "node:fs/promises";
import { userInfo } from "node:os";
import path from "node:path";
import type { DriverOptions } from "../drivers/driver.js";
import { describeChannel, needsAudioOff, type PinChannel } from "../drivers/pwm-chips.js";
import { nodeSysfs, type SysfsIO } from "../drivers/sysfs.js";
import { findChannels } from "../drivers/sysfs-pwm.js";

/**
 * The setup doctor's part for the kernel's PWM: for this board and these pins, how each pin is driven
 * (chip, channel, hardware or software PWM), the config.txt lines for the pins that have no channel
 * yet, whether the analogue audio must go, and whether the service user may write the files: the udev
 * rule, the `gpio` group and the files themselves.
 */

/** The user install.sh creates for the service; when absent (not installed), whoever runs --check. */
export const SERVICE_USER = "lamp-agent";
export const UDEV_RULE = "99-lamp-agent.rules";

export interface PinReport {
  /** Lines to print, already indented by the caller. */
  readonly lines: readonly string[];
  /** False when some pin has no channel or the service user could not write a file. */
  readonly ok: boolean;
}

export interface PinReportDeps {
  readonly io: SysfsIO;
  /** Root of `/etc` (tests point it at a fake one). */
  readonly etcRoot: string;
  /** The file's owner, group and mode, as the service user's access depends on them. */
  stat(file: string): Promise<{ uid: number; gid: number; mode: number }>;
}

const DEFAULT_DEPS: PinReportDeps = { io: nodeSysfs, etcRoot: "/etc", stat };

interface Account {
  readonly name: string;
  readonly uid: number;
  /** Every group the account is in, primary included. */
  readonly gids: ReadonlySet<number>;
}

export async function pinReport(
  options: Pick<DriverOptions, "pins" | "sysfsRoot">,
  deps: PinReportDeps = DEFAULT_DEPS,
): Promise<PinReport> {
  const { model, assignment } = await findChannels(options, deps.io);
  const lines = [`sysfs-pwm on ${model ?? "a board without a device-tree model"}:`];
  for (const [i, pin] of options.pins.entries()) {
    const channel = assignment.channels[i];
    const missing = assignment.missing.find((m) => m.pin === pin);
    lines.push(`  ${channel ? describeChannel(channel) : `pin ${pin}: no PWM channel (${missing?.why})`}`);
  }
  const { configLines, advice } = assignment.fix;
  if (configLines.length > 0) {
    lines.push("  add to /boot/firmware/config.txt, then reboot (hardware/README.md has the recipes):");
    for (const line of configLines) lines.push(`    ${line}`);
  }
  if (advice) lines.push(`  ${advice}`);
  const present = assignment.channels.filter((c): c is PinChannel => c !== undefined);
  if (needsAudioOff(model, present)) {
    lines.push("  dtparam=audio=off: needed (the analogue audio drives the same SoC PWM block)");
  }
  const access = await accessLines(present, deps);
  lines.push(...access.lines);
  return { lines, ok: assignment.missing.length === 0 && access.ok };
}

async function accessLines(channels: readonly PinChannel[], deps: PinReportDeps): Promise<PinReport> {
  const lines: string[] = [];
  const etc = (...parts: string[]) => path.join(deps.etcRoot, ...parts);
  const rule = (await deps.io.exists(etc("udev", "rules.d", UDEV_RULE)))
    ? "installed"
    : (await deps.io.exists(etc("udev", "rules.d", "99-com.rules")))
      ? `not installed; Raspberry Pi OS's 99-com.rules is there and covers /sys/class/pwm`
      : `missing: sudo install -m 0644 hardware/${UDEV_RULE} /etc/udev/rules.d/ && sudo udevadm trigger`;
  lines.push(`  udev rule ${UDEV_RULE}: ${rule}`);
  const groups = await readTable(etc("group"));
  const passwd = await readTable(etc("passwd"));
  const gpio = groups.find((g) => g[0] === "gpio");
  const account = accountFor(passwd, groups);
  const gpioGid = gpio ? Number(gpio[2]) : undefined;
  if (gpioGid === undefined) {
    lines.push("  group gpio: missing: sudo groupadd --system gpio");
  } else {
    const member = account.gids.has(gpioGid);
    lines.push(
      `  group gpio: ${account.name} is ${member ? "a member" : `not a member: sudo usermod -aG gpio ${account.name}`}`,
    );
  }
  // A channel already exported needs its own files; otherwise the chip's `export`.
  let ok = true;
  for (const { chip, channel, pin } of channels) {
    const dir = path.join(chip.dir, `pwm${channel}`);
    const files = (await deps.io.exists(dir))
      ? [path.join(dir, "duty_cycle"), path.join(dir, "enable")]
      : [path.join(chip.dir, "export")];
    for (const file of files) {
      const why = await cannotWrite(file, account, deps);
      if (why) {
        ok = false;
        lines.push(
          `  pin ${pin}: ${account.name} cannot write ${file} (${why}): install the udev rule, join gpio`,
        );
      }
    }
  }
  if (ok && channels.length > 0) lines.push(`  write access: ${account.name} can write every file it needs`);
  return { lines, ok };
}

async function readTable(file: string): Promise<string[][]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => line.split(":"));
}

function accountFor(passwd: string[][], groups: string[][]): Account {
  const entry =
    passwd.find((p) => p[0] === SERVICE_USER) ?? passwd.find((p) => Number(p[2]) === process.getuid?.());
  const name = entry?.[0] ?? userInfo().username;
  const uid = entry ? Number(entry[2]) : (process.getuid?.() ?? -1);
  const gids = new Set<number>(entry ? [Number(entry[3])] : (process.getgroups?.() ?? []));
  for (const group of groups) {
    if ((group[3] ?? "").split(",").includes(name)) gids.add(Number(group[2]));
  }
  return { name, uid, gids };
}

/** Why `account` cannot write `file`, from its owner, group and mode; null when it can. */
async function cannotWrite(file: string, account: Account, deps: PinReportDeps): Promise<string | null> {
  if (account.uid === 0) return null;
  let info: { uid: number; gid: number; mode: number };
  try {
    info = await deps.stat(file);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error);
  }
  const writable =
    (info.uid === account.uid && info.mode & 0o200) ||
    (account.gids.has(info.gid) && info.mode & 0o020) ||
    info.mode & 0o002;
  const mode = (info.mode & 0o777).toString(8);
  return writable ? null : `owner ${info.uid}, group ${info.gid}, mode ${mode}`;
}

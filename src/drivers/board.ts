import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * Which Raspberry Pi this is, from the device tree the firmware hands the kernel. Pure functions take
 * the model string so `--check`, the config validator and tests can use them without a Pi.
 */

/** The PWM block a board's GPIO 12, 13, 18 and 19 are wired to. */
export type PwmFamily = "bcm2835" | "rp1";

export interface PwmBlock {
  readonly family: PwmFamily;
  /**
   * How the kernel names the platform device of that PWM block. Pi 0-4: the BCM283x/2711 PWM at bus
   * address 0x7e20c000, which the kernel names by its ARM physical address: `2020c000.pwm` (Pi 0/1),
   * `3f20c000.pwm` (Pi 2/3/Zero 2), `fe20c000.pwm` (Pi 4/400/CM4), so the suffix is what is stable.
   * Pi 5: RP1's PWM0 is `1f00098000.pwm`; RP1's PWM1 (`1f0009c000.pwm`) drives the fan and is not ours.
   */
  readonly matches: (deviceName: string) => boolean;
  /** What a user would look for in `ls -l /sys/class/pwm`. */
  readonly deviceHint: string;
  /** BCM pin -> channel of that block. */
  readonly channels: Readonly<Record<number, number>>;
}

/** The PWM block of every Pi 0-4 (BCM2835, 2836, 2837, 2711). */
export const BCM2835_PWM: PwmBlock = {
  family: "bcm2835",
  matches: (name) => /^([0-9a-f]+)?20c000\.pwm$/.test(name),
  deviceHint: "7e20c000.pwm (fe20c000.pwm on a Pi 4, 3f20c000.pwm on a Pi 3)",
  // One PWM block with two channels, each reachable on two pins: 12 or 18 is channel 0, 13 or 19 is 1.
  channels: { 12: 0, 18: 0, 13: 1, 19: 1 },
};

const RP1_PWM0: PwmBlock = {
  family: "rp1",
  matches: (name) => name === "1f00098000.pwm",
  deviceHint: "1f00098000.pwm (RP1 PWM0)",
  // RP1 PWM0 has four channels: GPIO12 = CHAN0, 13 = CHAN1 (alt0), 18 = CHAN2, 19 = CHAN3 (alt3).
  channels: { 12: 0, 13: 1, 18: 2, 19: 3 },
};

/** The firmware writes the model NUL-terminated, e.g. `Raspberry Pi 4 Model B Rev 1.4\0`. */
export function modelPath(sysfsRoot: string): string {
  return path.join(sysfsRoot, "firmware", "devicetree", "base", "model");
}

/** The board model, or null when this is not a device-tree machine (a laptop, a container). */
export async function readBoardModel(sysfsRoot: string): Promise<string | null> {
  try {
    // Synchronously, as the diagnostics read /proc: the kernel answers a device-tree file without a
    // disk, and fs/promises (with readline behind it) is one more module for every start to load.
    return cleanModel(readFileSync(modelPath(sysfsRoot), "utf8"));
  } catch {
    return null;
  }
}

function cleanModel(raw: string): string | null {
  return raw.replace(/\0+$/, "").trim() || null;
}

/** Why `driver` cannot run on a board that is not a Pi, in the words every driver's probe uses. */
export function notAPi(
  driver: string,
  sysfsRoot: string,
  model: string | null,
): { ok: false; reason: string } {
  const what = model === null ? `no ${modelPath(sysfsRoot)}` : `board model "${model}"`;
  return { ok: false, reason: `${driver}: not a Raspberry Pi (${what})` };
}

export function isRaspberryPi(model: string | null): model is string {
  return model !== null && /Raspberry Pi/i.test(model);
}

/** The Pi 5 family (5, 500, Compute Module 5) moved GPIO and PWM to the RP1 chip. */
export function isPi5Family(model: string | null): boolean {
  return model !== null && /Raspberry Pi (5|500|Compute Module 5)\b/i.test(model);
}

/** The PWM block for this model, or null off a Pi. */
export function pwmBlockFor(model: string | null): PwmBlock | null {
  if (!isRaspberryPi(model)) return null;
  return isPi5Family(model) ? RP1_PWM0 : BCM2835_PWM;
}

/**
 * The hardware PWM channel a BCM pin drives on this board, or undefined when the pin has none.
 */
export function pwmChannelFor(model: string | null, pin: number): number | undefined {
  return pwmBlockFor(model)?.channels[pin];
}

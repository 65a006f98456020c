import path from "node:path";
import { isPi5Family, isRaspberryPi, type PwmBlock, pwmBlockFor } from "./board.js";
import type { SysfsIO } from "./sysfs.js";

/**
 * Which kernel PWM channel drives which pin, found in `/sys/class/pwm` by what each chip *is*, never by
 * its number (numbers follow probe order and move between kernels and overlays).
 *
 * Two kinds of chip drive header pins:
 * - the SoC's PWM block (BCM2835/2711 `*20c000.pwm`, the Pi 5's RP1 PWM0 `1f00098000.pwm`), several
 *   channels, each reachable on fixed pins; found by its platform device's name (board.ts);
 * - per-pin chips, one channel driving one GPIO: `dtoverlay=pwm-pio,gpio=N` (Pi 5, RP1 PIO,
 *   `raspberrypi,pwm-pio-rp1`) and `dtoverlay=pwm-gpio,gpio=N` (any board, kernel 6.6.62+, the upstream
 *   hrtimer-driven `pwm-gpio`). Both overlays put a node `pwm_pio@<N hex>` / `pwm_gpio@<N hex>` at the
 *   device-tree root with `gpios = <&gpio N 0>` (raspberrypi/linux arch/arm/boot/dts/overlays/
 *   pwm-pio-overlay.dts, pwm-gpio-overlay.dts). The chip's `device/of_node` is that node, so the pin is
 *   read from its `gpios` property, or from the node's unit address when the property is unreadable.
 *   Nothing here depends on the board being a Pi: any kernel that shows per-pin chips this way works.
 */

export type ChipKind = "soc" | "pwm-pio" | "pwm-gpio" | "per-pin" | "other";

export interface PwmChip {
  /** `<root>/class/pwm/pwmchipN` */
  readonly dir: string;
  /** `pwmchipN` */
  readonly name: string;
  /** The platform device the chip belongs to, e.g. `1f00098000.pwm` or `pwm_pio@1a`. */
  readonly device: string;
  readonly npwm: number;
  /** The one GPIO a per-pin chip drives, from its device-tree node; undefined for every other chip. */
  readonly pin: number | undefined;
  /** The node's first `compatible` string, when it has one. */
  readonly compatible: string | undefined;
}

/** Every PWM chip under `<root>/class/pwm`, in chip-number order (for stable output only). */
export async function listPwmChips(sysfsRoot: string, io: SysfsIO): Promise<PwmChip[]> {
  const classDir = path.join(sysfsRoot, "class", "pwm");
  let entries: string[];
  try {
    entries = await io.readdir(classDir);
  } catch {
    return [];
  }
  const names = entries
    .filter((entry) => /^pwmchip\d+$/.test(entry))
    .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
  const chips: PwmChip[] = [];
  for (const name of names) {
    const dir = path.join(classDir, name);
    let device: string;
    try {
      device = path.basename(await io.realpath(path.join(dir, "device")));
    } catch {
      continue;
    }
    const npwm = Number.parseInt(await io.readFile(path.join(dir, "npwm")).catch(() => "0"), 10);
    const node = await readNode(path.join(dir, "device", "of_node"), io);
    chips.push({
      dir,
      name,
      device,
      npwm: Number.isFinite(npwm) ? npwm : 0,
      pin: npwm === 1 ? node.pin : undefined,
      compatible: node.compatible,
    });
  }
  return chips;
}

const PER_PIN_NODE = /^pwm_(?:pio|gpio)@([0-9a-f]+)$/;

async function readNode(
  ofNode: string,
  io: SysfsIO,
): Promise<{ pin: number | undefined; compatible: string | undefined }> {
  let nodeDir: string;
  try {
    nodeDir = await io.realpath(ofNode);
  } catch {
    return { pin: undefined, compatible: undefined };
  }
  const compatible = await io
    .readFile(path.join(nodeDir, "compatible"))
    .then((raw) => raw.split("\0")[0] || undefined)
    .catch(() => undefined);
  const fromGpios = await io
    .readBytes(path.join(nodeDir, "gpios"))
    .then(pinFromGpios)
    .catch(() => undefined);
  if (fromGpios !== undefined) return { pin: fromGpios, compatible };
  const byName = PER_PIN_NODE.exec(path.basename(nodeDir));
  return { pin: byName ? Number.parseInt(byName[1] ?? "", 16) : undefined, compatible };
}

/**
 * A `gpios` property holding one GPIO specifier: big-endian u32 cells `<phandle pin flags>` (controllers
 * with `#gpio-cells = <2>`, every Pi) or `<phandle pin>`. More cells mean several GPIOs: not a per-pin chip.
 */
export function pinFromGpios(bytes: Uint8Array): number | undefined {
  if (bytes.length !== 8 && bytes.length !== 12) return undefined;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, false);
}

export function kindOf(chip: PwmChip, block: PwmBlock | null): ChipKind {
  if (block?.matches(chip.device)) return "soc";
  if (chip.pin === undefined) return "other";
  if (chip.compatible === "raspberrypi,pwm-pio-rp1") return "pwm-pio";
  if (chip.compatible === "pwm-gpio") return "pwm-gpio";
  return "per-pin";
}

/** pwm-gpio toggles the pin from an hrtimer: it jitters under load. Everything else is timed in hardware. */
export function isSoftware(kind: ChipKind): boolean {
  return kind === "pwm-gpio";
}

export interface PinChannel {
  readonly pin: number;
  readonly chip: PwmChip;
  readonly channel: number;
  readonly kind: ChipKind;
}

export interface MissingPin {
  readonly pin: number;
  /** Why the pin has no channel, in a few words. */
  readonly why: string;
}

export interface Assignment {
  /** One entry per pin, in `pins` order; undefined where the pin has no channel. */
  readonly channels: readonly (PinChannel | undefined)[];
  readonly missing: readonly MissingPin[];
  /** What fixes `missing`: config.txt lines on a Pi, advice elsewhere. Empty when nothing is missing. */
  readonly fix: Fix;
}

export interface Fix {
  /** Lines for /boot/firmware/config.txt (then reboot); empty off a Pi. */
  readonly configLines: readonly string[];
  /** Off a Pi: what the device tree needs instead. */
  readonly advice: string | undefined;
}

/**
 * A pin with its own chip uses it; otherwise the SoC block's channel for that pin, when the block's chip
 * is there and no earlier pin took the channel (two pins on one channel always show the same duty).
 */
export function assignChannels(
  model: string | null,
  pins: readonly number[],
  chips: readonly PwmChip[],
): Assignment {
  const block = pwmBlockFor(model);
  const soc = chips.find((chip) => kindOf(chip, block) === "soc");
  const taken = new Map<number, number>();
  const channels: (PinChannel | undefined)[] = [];
  const missing: MissingPin[] = [];
  for (const pin of pins) {
    const own = chips.find((chip) => chip.pin === pin && kindOf(chip, block) !== "soc");
    if (own) {
      channels.push({ pin, chip: own, channel: 0, kind: kindOf(own, block) });
      continue;
    }
    const channel = block?.channels[pin];
    const holder = channel === undefined ? undefined : taken.get(channel);
    if (soc && channel !== undefined && holder === undefined && channel < soc.npwm) {
      taken.set(channel, pin);
      channels.push({ pin, chip: soc, channel, kind: "soc" });
      continue;
    }
    channels.push(undefined);
    missing.push({
      pin,
      why:
        holder !== undefined
          ? `shares ${block?.deviceHint ?? "SoC PWM"} channel ${channel} with pin ${holder}`
          : "no PWM chip drives it",
    });
  }
  return { channels, missing, fix: fixFor(model, block, pins, channels, chips) };
}

/** `func` is the BCM function-select number: 4 = ALT0 (GPIO 12/13), 2 = ALT5 (GPIO 18/19). */
const funcOf = (pin: number): number => (pin === 12 || pin === 13 ? 4 : 2);

/** RP1 has four PIO state machines: at most four pwm-pio instances (raspberrypi/linux PR #6470). */
const PWM_PIO_MAX = 4;

/**
 * The config.txt lines that give every pin without a channel one, preferring hardware timing:
 * - Pi 5: `pwm-pio` per pin (RP1 PIO, hardware-timed), `pwm-gpio` beyond the four PIO instances;
 * - Pi 0-4: the SoC block for pins whose channel is still free (`pwm` for one pin, `pwm-2chan` for two,
 *   with `dtparam=audio=off`: the analogue audio uses that block), `pwm-gpio` for the rest.
 */
function fixFor(
  model: string | null,
  block: PwmBlock | null,
  pins: readonly number[],
  channels: readonly (PinChannel | undefined)[],
  chips: readonly PwmChip[],
): Fix {
  const without = pins.filter((_, i) => channels[i] === undefined);
  if (without.length === 0) return { configLines: [], advice: undefined };
  if (!isRaspberryPi(model) || !block) {
    return {
      configLines: [],
      advice:
        `no PWM chip drives GPIO ${without.join(", ")}: give each its own in the device tree, a node with ` +
        '`compatible = "pwm-gpio"` and `gpios = <&gpio N 0>` (as the Raspberry Pi pwm-gpio overlay adds)',
    };
  }
  const lines: string[] = [];
  if (isPi5Family(model)) {
    let pio = chips.filter((chip) => kindOf(chip, block) === "pwm-pio").length;
    for (const pin of without) {
      lines.push(`dtoverlay=${pio < PWM_PIO_MAX ? "pwm-pio" : "pwm-gpio"},gpio=${pin}`);
      pio += 1;
    }
    return { configLines: lines, advice: undefined };
  }
  const usedChannels = new Set(channels.filter((c) => c?.kind === "soc").map((c) => c?.channel));
  const socChip = chips.some((chip) => kindOf(chip, block) === "soc");
  const toSoc: number[] = [];
  for (const pin of without) {
    const channel = block.channels[pin];
    // The block's chip exists already: its pin routing is in config.txt; do not propose a second one.
    if (!socChip && channel !== undefined && !usedChannels.has(channel)) {
      usedChannels.add(channel);
      toSoc.push(pin);
    }
  }
  const [a, b] = toSoc;
  if (a !== undefined && b !== undefined) {
    lines.push(`dtoverlay=pwm-2chan,pin=${a},func=${funcOf(a)},pin2=${b},func2=${funcOf(b)}`);
  } else if (a !== undefined) {
    lines.push(`dtoverlay=pwm,pin=${a},func=${funcOf(a)}`);
  }
  for (const pin of without) if (!toSoc.includes(pin)) lines.push(`dtoverlay=pwm-gpio,gpio=${pin}`);
  if (toSoc.length > 0) lines.push("dtparam=audio=off");
  return { configLines: lines, advice: undefined };
}

/** Whether pins on the SoC block of a Pi 0-4 need the analogue audio off (it drives the same block). */
export function needsAudioOff(model: string | null, channels: readonly (PinChannel | undefined)[]): boolean {
  return pwmBlockFor(model)?.family === "bcm2835" && channels.some((c) => c?.kind === "soc");
}

/** One line per pin, e.g. `pin 26: pwmchip2 channel 0 (pwm_pio@1a, pwm-pio, hardware PWM)`. */
export function describeChannel(c: PinChannel): string {
  const timing = isSoftware(c.kind) ? "software PWM (hrtimer)" : "hardware PWM";
  return `pin ${c.pin}: ${c.chip.name} channel ${c.channel} (${c.chip.device}, ${c.kind}, ${timing})`;
}

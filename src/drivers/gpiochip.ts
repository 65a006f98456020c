import path from "node:path";
import type { SysfsIO } from "./sysfs.js";

/**
 * The legacy sysfs GPIO number of a BCM pin. Up to kernel 6.1 the Pi's pin controller was registered
 * first with base 0, so BCM pin N was gpioN. From 6.6 the kernel allocates bases dynamically from 512
 * upwards, and the Pi's pins moved: base 512 on a Pi 4, 571 on a Pi 5 (fivdi/onoff#200; writing N to
 * `export` then fails with EINVAL). The SoC's own bank is the chip labelled `pinctrl-*`
 * (`pinctrl-bcm2835`, `pinctrl-bcm2711`, `pinctrl-rp1`); the firmware GPIO expander and the Pi 5's
 * `gpio-brcmstb@...` chips are not the header pins.
 */
export interface GpioChip {
  readonly name: string;
  readonly label: string;
  readonly base: number;
  readonly ngpio: number;
}

export async function listGpioChips(sysfsRoot: string, io: SysfsIO): Promise<GpioChip[]> {
  const dir = path.join(sysfsRoot, "class", "gpio");
  let entries: string[];
  try {
    entries = await io.readdir(dir);
  } catch {
    return [];
  }
  const chips: GpioChip[] = [];
  for (const name of entries.filter((entry) => /^gpiochip\d+$/.test(entry))) {
    try {
      const read = (file: string) => io.readFile(path.join(dir, name, file)).then((text) => text.trim());
      const [label, base, ngpio] = await Promise.all([read("label"), read("base"), read("ngpio")]);
      chips.push({ name, label, base: Number.parseInt(base, 10), ngpio: Number.parseInt(ngpio, 10) });
    } catch {
      // A chip without the usual files is not one we can use; the others still count.
    }
  }
  return chips.sort((a, b) => a.base - b.base);
}

/** The header pins' gpiochip, or null when there is none (not a Pi, or no CONFIG_GPIO_SYSFS). */
export async function findPinctrlChip(sysfsRoot: string, io: SysfsIO): Promise<GpioChip | null> {
  const chips = await listGpioChips(sysfsRoot, io);
  return chips.find((chip) => chip.label.startsWith("pinctrl-")) ?? null;
}

/** BCM pin -> sysfs number, or undefined when the chip has no such line. */
export function sysfsGpioNumber(chip: GpioChip, pin: number): number | undefined {
  return Number.isInteger(pin) && pin >= 0 && pin < chip.ngpio ? chip.base + pin : undefined;
}

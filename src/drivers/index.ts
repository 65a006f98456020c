import { isRaspberryPi, readBoardModel } from "./board.js";
import type { Availability, DriverModule, DriverName, DriverOptions } from "./driver.js";

/** Drivers are imported only when chosen, so a laptop never loads native GPIO code. */
const loaders: Record<DriverName, () => Promise<DriverModule>> = {
  mock: async () => (await import("./mock.js")).mockDriver,
  pigpio: async () => (await import("./pigpio.js")).pigpioDriver,
  "sysfs-pwm": async () => (await import("./sysfs-pwm.js")).sysfsPwmDriver,
  onoff: async () => (await import("./onoff.js")).onoffDriver,
};

/** The order `auto` tries on a Pi: DMA PWM on any pin, then the kernel's PWM, then plain on/off. */
export const AUTO_ORDER: readonly DriverName[] = ["pigpio", "sysfs-pwm", "onoff"];

export async function loadDriver(name: DriverName): Promise<DriverModule> {
  return loaders[name]();
}

export interface Selection {
  readonly module: DriverModule;
  /** Why this driver, or why the chosen one cannot run (then `ok` is false). */
  readonly availability: Availability;
  /** For `auto`: what each candidate said, for the log and `--check`. */
  readonly tried: readonly { readonly name: DriverName; readonly availability: Availability }[];
}

/**
 * `auto` tries AUTO_ORDER and takes the first that works. Off a Pi it falls back to the mock (ok, so
 * the demo and development run; the caller warns). On a Pi where none works it does not pretend: the
 * selection is the mock but `ok` is false, with every candidate's reason, so the agent stops and
 * `--check` says why instead of a lamp that silently stays dark.
 */
export async function selectDriver(choice: DriverName | "auto", options: DriverOptions): Promise<Selection> {
  if (choice !== "auto") {
    const module = await loadDriver(choice);
    return { module, availability: await module.probe(options), tried: [] };
  }
  const tried: { name: DriverName; availability: Availability }[] = [];
  for (const name of AUTO_ORDER) {
    const module = await loadDriver(name);
    const availability = await module.probe(options);
    tried.push({ name, availability });
    if (availability.ok) return { module, availability, tried };
  }
  const mock = await loadDriver("mock");
  if (isRaspberryPi(await readBoardModel(options.sysfsRoot))) {
    return {
      module: mock,
      availability: {
        ok: false,
        reason: `no GPIO driver works on this Raspberry Pi: ${tried.map((t) => reasonOf(t.availability)).join("; ")}`,
      },
      tried,
    };
  }
  return {
    module: mock,
    availability: { ok: true, detail: "not a Raspberry Pi: using the mock driver, no pins are driven" },
    tried,
  };
}

function reasonOf(availability: Availability): string {
  return availability.ok ? (availability.detail ?? "ok") : availability.reason;
}

/**
 * One line for the log and `--check`: which driver and why, e.g.
 * `sysfs-pwm: kernel PWM pwmchip0 (1f00098000.pwm), ... (skipped pigpio: the Raspberry Pi 5 is not supported ...)`.
 */
export function describeSelection(selection: Selection): string {
  const skipped = selection.tried
    .filter((t) => t.name !== selection.module.name && !t.availability.ok)
    .map((t) => reasonOf(t.availability));
  const why = reasonOf(selection.availability);
  const head = why.startsWith(`${selection.module.name}:`) ? why : `${selection.module.name}: ${why}`;
  // Off a Pi every candidate says "not a Raspberry Pi": the mock's own reason already says that.
  const listSkipped = skipped.length > 0 && selection.availability.ok && selection.module.name !== "mock";
  return listSkipped ? `${head} (skipped ${skipped.join("; ")})` : head;
}

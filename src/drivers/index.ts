import { isRaspberryPi, readBoardModel } from "./board.js";
import type { Availability, DriverModule, DriverName, DriverOptions } from "./driver.js";

/** Drivers are imported only when chosen, so a laptop never loads native GPIO code. */
const loaders: Record<DriverName, () => Promise<DriverModule>> = {
  mock: async () => (await import("./mock.js")).mockDriver,
  pigpio: async () => (await import("./pigpio.js")).pigpioDriver,
  "sysfs-pwm": async () => (await import("./sysfs-pwm.js")).sysfsPwmDriver,
  onoff: async () => (await import("./onoff.js")).onoffDriver,
};

/**
 * The order `auto` tries on a Pi, best first (hardware/README.md, "How auto chooses"):
 * 1. `sysfs-pwm` when every pin is hardware-timed (the SoC's PWM block, pwm-pio): exact, no root, no
 *    native code;
 * 2. `pigpio`: DMA-timed on any pin, but root only, not on a Pi 5, not packaged on Trixie;
 * 3. `sysfs-pwm` with some pin on pwm-gpio: no root, but timed by a kernel hrtimer, so it jitters a
 *    little under load;
 * 4. `onoff`: on/off only.
 */
export const AUTO_ORDER: readonly { readonly name: DriverName; readonly hardwareOnly?: boolean }[] = [
  { name: "sysfs-pwm", hardwareOnly: true },
  { name: "pigpio" },
  { name: "sysfs-pwm" },
  { name: "onoff" },
];

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
 * `auto` tries AUTO_ORDER and takes the first that works, probing each driver once. Off a Pi it falls back to the mock (ok, so
 * the demo and development run; the caller warns). On a Pi where none works it does not pretend: the
 * selection is the mock but `ok` is false, with every candidate's reason, so the agent stops and
 * `--check` says why instead of a lamp that silently stays dark.
 */
export async function selectDriver(
  choice: DriverName | "auto",
  options: DriverOptions,
  load: (name: DriverName) => Promise<DriverModule> = loadDriver,
): Promise<Selection> {
  if (choice !== "auto") {
    const module = await load(choice);
    return { module, availability: await module.probe(options), tried: [] };
  }
  const tried: { name: DriverName; availability: Availability }[] = [];
  const modules = new Map<DriverName, DriverModule>();
  for (const { name, hardwareOnly } of AUTO_ORDER) {
    let module = modules.get(name);
    if (!module) {
      module = await load(name);
      modules.set(name, module);
      tried.push({ name, availability: await module.probe(options) });
    }
    const availability = tried.find((t) => t.name === name)?.availability;
    if (availability?.ok && !(hardwareOnly && availability.softwareTimed)) {
      return { module, availability, tried };
    }
  }
  const mock = await load("mock");
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
    .filter((t) => t.name !== selection.module.name)
    .map((t) =>
      t.availability.ok
        ? `${t.name}: usable, but some pin would be software PWM (pwm-gpio)`
        : t.availability.reason,
    );
  const why = reasonOf(selection.availability);
  const head = why.startsWith(`${selection.module.name}:`) ? why : `${selection.module.name}: ${why}`;
  // Off a Pi every candidate says "not a Raspberry Pi": the mock's own reason already says that.
  const listSkipped = skipped.length > 0 && selection.availability.ok && selection.module.name !== "mock";
  return listSkipped ? `${head} (skipped ${skipped.join("; ")})` : head;
}

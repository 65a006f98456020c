import type { Availability, DriverModule, DriverName, DriverOptions } from "./driver.js";

/** Drivers are imported only when chosen, so a laptop never loads native GPIO code. */
const loaders: Record<DriverName, () => Promise<DriverModule>> = {
  mock: async () => (await import("./mock.js")).mockDriver,
  pigpio: async () => unavailable("pigpio"),
  "sysfs-pwm": async () => unavailable("sysfs-pwm"),
  onoff: async () => unavailable("onoff"),
};

function unavailable(name: DriverName): DriverModule {
  return {
    name,
    async probe() {
      return { ok: false, reason: `${name}: driver not built into this version` };
    },
    create() {
      throw new Error(`${name}: driver not built into this version`);
    },
  };
}

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
  return {
    module: mock,
    availability: { ok: true, detail: "no GPIO driver works on this machine: using the mock driver" },
    tried,
  };
}

import { createRequire } from "node:module";
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
import { findPinctrlChip, type GpioChip, sysfsGpioNumber } from "./gpiochip.js";
import { errnoCode, nodeSysfs, type SysfsIO } from "./sysfs.js";

/**
 * onoff (fivdi/onoff): the kernel's legacy sysfs GPIO as plain outputs. On or off only, for a relay or
 * an LED without PWM; the sysfs number of each BCM pin comes from the `pinctrl-*` chip's base, so it
 * works on 6.1 kernels (base 0) and 6.6+ (base 512 or 571). onoff itself always uses
 * `/sys/class/gpio`; `SYSFS_ROOT` moves only the number lookup and the check that export is writable.
 */

export interface OnoffGpio {
  writeSync(value: 0 | 1): void;
  unexport(): void;
}

export interface OnoffModule {
  Gpio: {
    new (gpio: number, direction: "high" | "low", options: { activeLow: boolean }): OnoffGpio;
  };
}

export interface OnoffDeps {
  readonly io: SysfsIO;
  /** Imports the `onoff` package (lazily: its `epoll` dependency is a native addon). */
  load(): Promise<OnoffModule>;
}

const ONOFF_PACKAGE = "onoff";
const requireHere = createRequire(import.meta.url);

async function loadOnoff(): Promise<OnoffModule> {
  try {
    // require, not import(): dist/main.js runs the bundle as a script, where import() has no loader.
    const mod = requireHere(ONOFF_PACKAGE) as { default?: OnoffModule } & Partial<OnoffModule>;
    return mod.default ?? (mod as OnoffModule);
  } catch (error) {
    throw new DriverError("unavailable", onoffLoadProblem(error), { cause: error });
  }
}

/** What to do when loading onoff fails, in words a user can act on. */
export function onoffLoadProblem(error: unknown): string {
  const code = errnoCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if ((code === "MODULE_NOT_FOUND" || code === "ERR_MODULE_NOT_FOUND") && /'onoff'/.test(message)) {
    return "onoff: the optional package is not installed: run `npm install onoff`";
  }
  if (/bindings file|epoll\.node|did not self-register/i.test(message)) {
    return (
      "onoff: its native dependency epoll was never built: run " +
      "`npm install-scripts approve epoll && npm rebuild epoll` in the agent's directory " +
      "(npm 11 skips dependencies' install scripts until approved)"
    );
  }
  return `onoff: the package does not load: ${message}`;
}

const DEFAULT_DEPS: OnoffDeps = { io: nodeSysfs, load: loadOnoff };

interface Plan {
  readonly chip: GpioChip;
  readonly numbers: readonly number[];
}

async function plan(
  options: DriverOptions,
  deps: OnoffDeps,
): Promise<{ ok: true; plan: Plan } | { ok: false; reason: string }> {
  const model = await readBoardModel(options.sysfsRoot);
  if (!isRaspberryPi(model)) {
    return notAPi("onoff", options.sysfsRoot, model);
  }
  const chip = await findPinctrlChip(options.sysfsRoot, deps.io);
  if (!chip) {
    return {
      ok: false,
      reason: `onoff: no pinctrl-* gpiochip under ${path.join(options.sysfsRoot, "class", "gpio")} (kernel without sysfs GPIO?)`,
    };
  }
  const numbers: number[] = [];
  const bad: number[] = [];
  for (const pin of options.pins) {
    const number = sysfsGpioNumber(chip, pin);
    if (number === undefined) bad.push(pin);
    else numbers.push(number);
  }
  if (bad.length > 0) {
    return {
      ok: false,
      reason: `onoff: ${chip.label} has GPIO 0-${chip.ngpio - 1}; pins ${bad.join(", ")} do not exist`,
    };
  }
  return { ok: true, plan: { chip, numbers } };
}

export class OnoffDriver implements Driver {
  readonly name = "onoff" as const;
  readonly dimmable = false;
  private readonly access = new PinAccess("onoff");
  private gpios: { pin: number; gpio: OnoffGpio; last: 0 | 1 }[] = [];

  constructor(
    private readonly options: DriverOptions,
    private readonly deps: OnoffDeps = DEFAULT_DEPS,
  ) {}

  open(initial: readonly number[]): Promise<void> {
    return this.access.open(
      "onoff driver",
      () => this.claim(initial),
      () => this.release(),
    );
  }

  private async claim(initial: readonly number[]): Promise<void> {
    checkDuties(this.name, this.options.pins, initial);
    const planned = await plan(this.options, this.deps);
    if (!planned.ok) throw new DriverError("unavailable", planned.reason);
    const { Gpio } = await this.deps.load();
    for (const [i, pin] of this.options.pins.entries()) {
      const number = planned.plan.numbers[i] ?? -1;
      const value: 0 | 1 = (initial[i] ?? 0) > 0 ? 1 : 0;
      // No flash at start: the pin becomes an output already at its level. The kernel's `high`/`low`
      // directions set the raw level and ignore active_low (gpiolib-sysfs direction_store), so an
      // active-low pin that should be lit starts `low`.
      const raw = this.options.activeLow ? 1 - value : value;
      try {
        const gpio = new Gpio(number, raw === 1 ? "high" : "low", { activeLow: this.options.activeLow });
        this.gpios.push({ pin, gpio, last: value });
      } catch (error) {
        throw new DriverError(
          "io",
          `onoff driver: cannot export pin ${pin} as gpio${number} (${planned.plan.chip.label} base ` +
            `${planned.plan.chip.base}): ${errorMessage(error)}`,
          { cause: error },
        );
      }
    }
    this.options.logger.debug(
      { chip: planned.plan.chip.name, base: planned.plan.chip.base, numbers: planned.plan.numbers },
      "onoff: pins open",
    );
  }

  async write(duties: readonly number[]): Promise<void> {
    this.access.checkWrite(this.options.pins, duties);
    for (const [i, entry] of this.gpios.entries()) {
      // Logical values: onoff set `active_low`, so the kernel inverts for active-low wiring.
      const value: 0 | 1 = (duties[i] ?? 0) > 0 ? 1 : 0;
      if (value === entry.last) continue;
      try {
        entry.gpio.writeSync(value);
      } catch (error) {
        throw new DriverError("io", `onoff driver: pin ${entry.pin}: ${errorMessage(error)}`, {
          cause: error,
        });
      }
      entry.last = value;
    }
  }

  close(): Promise<void> {
    return this.access.close(() => this.release());
  }

  /** Off, then unexport (the pin goes back to an input), each pin on its own. */
  private async release(): Promise<void> {
    const { logger } = this.options;
    for (const entry of this.gpios) {
      await bestEffort(logger, entry.pin, "onoff: switching off", () => entry.gpio.writeSync(0));
      await bestEffort(logger, entry.pin, "onoff: unexport", () => entry.gpio.unexport());
    }
    this.gpios = [];
  }
}

export function createOnoffModule(overrides: Partial<OnoffDeps> = {}): DriverModule {
  const deps: OnoffDeps = { ...DEFAULT_DEPS, ...overrides };
  return {
    name: "onoff",
    async probe(options): Promise<Availability> {
      const planned = await plan(options, deps);
      if (!planned.ok) return { ok: false, reason: planned.reason };
      const exportFile = path.join(options.sysfsRoot, "class", "gpio", "export");
      try {
        await deps.io.checkWritable(exportFile);
      } catch (error) {
        return {
          ok: false,
          reason:
            `onoff: ${exportFile} is not writable (${errnoCode(error) ?? errorMessage(error)}): ` +
            "add the service user to group gpio, or run as root",
        };
      }
      try {
        await deps.load();
      } catch (error) {
        return { ok: false, reason: error instanceof DriverError ? error.message : onoffLoadProblem(error) };
      }
      const { chip, numbers } = planned.plan;
      return {
        ok: true,
        detail: `on/off only, ${chip.label} base ${chip.base}: pins ${options.pins.join(", ")} = gpio ${numbers.join(", ")}`,
      };
    },
    create: (options) => new OnoffDriver(options, deps),
  };
}

export const onoffDriver: DriverModule = createOnoffModule();

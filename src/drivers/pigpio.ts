import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { BCM2835_PWM, isPi5Family, isRaspberryPi, notAPi, readBoardModel } from "./board.js";
import { bestEffort, checkDuties, errorMessage, PinAccess } from "./contract.js";
import {
  type Availability,
  type Driver,
  DriverError,
  type DriverModule,
  type DriverOptions,
} from "./driver.js";

/**
 * pigpio (fivdi/pigpio over joan2937/pigpio): DMA-timed PWM on any GPIO of a Pi Zero to 4, and the
 * PWM peripheral's hardware PWM on 12/13/18/19. Root only, one process at a time, no Pi 5.
 *
 * The native package is an optional dependency and is imported only here, only when this driver is
 * chosen; the part of it we use is typed below so the rest of the agent never sees its types.
 */

export interface PigpioGpio {
  pwmFrequency(frequency: number): PigpioGpio;
  pwmRange(range: number): PigpioGpio;
  getPwmRealRange(): number;
  pwmWrite(dutyCycle: number): PigpioGpio;
  hardwarePwmWrite(frequency: number, dutyCycle: number): PigpioGpio;
  digitalWrite(level: number): PigpioGpio;
}

export interface PigpioModule {
  Gpio: new (gpio: number, options?: { mode?: number }) => PigpioGpio;
  configureClock(microseconds: number, peripheral: number): void;
  configureInterfaces(flags: number): number;
  initialize(): void;
  terminate(): void;
  readonly CLOCK_PCM: number;
  readonly DISABLE_FIFO_IF: number;
  readonly DISABLE_SOCK_IF: number;
}

/**
 * DMA PWM sample rate. pigpio's default of 5 µs gives 200 steps at 1 kHz; 2 µs gives 500, so a
 * gamma-corrected dim lamp still has visible steps, for about 16% CPU on a Pi 1 instead of 10%
 * (pigpio's table, doc/configuration.md). Pins with hardware PWM get ~250 000 steps regardless.
 */
export const SAMPLE_RATE_US = 2;

/** pigpio writes its pid here and refuses to start while another live process holds it. */
export const PIGPIO_LOCK_FILE = "/var/run/pigpio.pid";

/** Signals pigpio's gpioInitialise() takes over with handlers that exit the process. */
const RECLAIMED_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

export interface PigpioDeps {
  /** Imports the `pigpio` package (lazily: it loads a native addon). */
  load(): Promise<PigpioModule>;
  /** Why the package cannot load here, without loading it; null when it looks loadable. */
  packageProblem(): string | null;
  getuid(): number | undefined;
  /** The pid in pigpio's lock file when that process is alive, else null. */
  lockHolder(): number | null;
  /** The process whose signal listeners are re-registered after pigpio initialises. */
  readonly proc: Pick<NodeJS.Process, "listeners" | "removeAllListeners" | "on">;
}

const requireHere = createRequire(import.meta.url);
// A variable specifier: TypeScript does not need the optional package at build time, and nothing
// resolves it until this driver is actually chosen.
const PIGPIO_PACKAGE = "pigpio";

async function loadPigpio(): Promise<PigpioModule> {
  // require, not import(): dist/main.js runs the bundle as a script, where import() has no loader.
  const mod = requireHere(PIGPIO_PACKAGE) as { default?: PigpioModule } & Partial<PigpioModule>;
  return mod.default ?? (mod as PigpioModule);
}

const APPROVE =
  "run `npm install-scripts approve pigpio && npm rebuild pigpio` in the agent's directory " +
  "(npm 11 skips dependencies' install scripts until approved)";

/**
 * Whether pigpio's addon exists and links, checked without importing pigpio.js: on failure that file
 * prints a 15-line banner to the console and then exports nothing.
 */
export function pigpioPackageProblem(resolve: (id: string) => string = requireHere.resolve): string | null {
  let packageDir: string;
  try {
    packageDir = path.dirname(resolve("pigpio/package.json"));
  } catch {
    return `pigpio: the optional package is not installed: run \`npm install pigpio\`, then ${APPROVE}`;
  }
  const addon = path.join(packageDir, "build", "Release", "pigpio.node");
  if (!existsSync(addon)) return `pigpio: its native addon was never built: ${APPROVE}`;
  try {
    requireHere(addon);
    return null;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // pigpio's binding.gyp compiles nothing when the C library is absent (no `pigpiod` on the PATH at
    // build time), which leaves an empty addon that fails with "Module did not self-register".
    if (/did not self-register|libpigpio/i.test(message)) {
      return (
        "pigpio: the addon was built without the pigpio C library: `sudo apt install pigpio` " +
        "(not packaged on Raspberry Pi OS Trixie: use GPIO_DRIVER=sysfs-pwm), then `npm rebuild pigpio`"
      );
    }
    return `pigpio: its native addon does not load (${message}): ${APPROVE}`;
  }
}

export function pigpioLockHolder(file = PIGPIO_LOCK_FILE): number | null {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(file, "utf8"), 10);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    // EPERM: it exists but belongs to someone else, which still holds the lock.
    return (error as NodeJS.ErrnoException).code === "EPERM" ? pid : null;
  }
}

const DEFAULT_DEPS: PigpioDeps = {
  load: loadPigpio,
  packageProblem: () => pigpioPackageProblem(),
  getuid: () => process.getuid?.(),
  lockHolder: () => pigpioLockHolder(),
  proc: process,
};

async function availability(options: DriverOptions, deps: PigpioDeps): Promise<Availability> {
  const model = await readBoardModel(options.sysfsRoot);
  if (!isRaspberryPi(model)) {
    return notAPi("pigpio", options.sysfsRoot, model);
  }
  if (isPi5Family(model)) {
    return {
      ok: false,
      reason: `pigpio: the ${model} is not supported by pigpio (joan2937/pigpio#589); use GPIO_DRIVER=sysfs-pwm`,
    };
  }
  const bad = options.pins.filter((pin) => !Number.isInteger(pin) || pin < 0 || pin > 31);
  if (bad.length > 0) return { ok: false, reason: `pigpio: pins ${bad.join(", ")} are not user GPIOs 0-31` };
  const problem = deps.packageProblem();
  if (problem) return { ok: false, reason: problem };
  if (deps.getuid() !== 0) {
    return {
      ok: false,
      reason:
        "pigpio: needs root (it maps /dev/mem for DMA): run the agent as root, or use GPIO_DRIVER=sysfs-pwm " +
        "(no root with hardware/99-lamp-agent.rules)",
    };
  }
  const holder = deps.lockHolder();
  if (holder !== null) {
    return {
      ok: false,
      reason:
        `pigpio: pigpiod (pid ${holder}) is running and holds ${PIGPIO_LOCK_FILE}; ` +
        "stop it with `sudo systemctl disable --now pigpiod`, or use GPIO_DRIVER=sysfs-pwm",
    };
  }
  return { ok: true, detail: `DMA PWM on ${model}, sample rate ${SAMPLE_RATE_US} µs` };
}

/** One of the lamp's pins as pigpio drives it. */
interface PigpioPin {
  readonly pin: number;
  readonly gpio: PigpioGpio;
  /** Hardware PWM: duty in millionths. DMA PWM: duty in steps of `range`. */
  readonly hardware: boolean;
  readonly range: number;
  last: number | undefined;
}

export class PigpioDriver implements Driver {
  readonly name = "pigpio" as const;
  readonly dimmable = true;
  private readonly access = new PinAccess("pigpio");
  private pigpio: PigpioModule | undefined;
  private outputs: PigpioPin[] = [];

  constructor(
    private readonly options: DriverOptions,
    private readonly deps: PigpioDeps = DEFAULT_DEPS,
  ) {}

  /**
   * Initialises pigpio and claims the pins. pigpio installs its own signal handlers when it
   * initialises, which replace Node's (fivdi/pigpio doc/configuration.md, `initialize()`): open() is
   * therefore meant to run before the agent installs its handlers, and in case it did not, Node's
   * listeners for SIGINT/SIGTERM/SIGHUP/SIGQUIT are re-registered right after, which makes libuv install
   * its handler again. Either way the agent's own handler runs on SIGTERM and calls close().
   */
  open(initial: readonly number[]): Promise<void> {
    return this.access.open(
      "pigpio driver",
      () => this.claim(initial),
      () => this.release(),
    );
  }

  private async claim(initial: readonly number[]): Promise<void> {
    checkDuties(this.name, this.options.pins, initial);
    const availability_ = await availability(this.options, this.deps);
    if (!availability_.ok) throw new DriverError("unavailable", availability_.reason);
    const pigpio = await this.deps.load();
    // Both configuration calls only take effect before initialisation.
    pigpio.configureClock(SAMPLE_RATE_US, pigpio.CLOCK_PCM);
    // No socket on port 8888 and no /dev/pigpio pipe: nobody else gets to drive our pins.
    pigpio.configureInterfaces(pigpio.DISABLE_FIFO_IF | pigpio.DISABLE_SOCK_IF);
    try {
      pigpio.initialize();
    } catch (error) {
      throw new DriverError(
        "unavailable",
        `pigpio driver: initialisation failed (${errorMessage(error)}): it needs root, no pigpiod, and a Pi 0-4`,
        { cause: error },
      );
    }
    this.pigpio = pigpio;
    this.reclaimSignals();
    const hardwareChannels = new Set<number>();
    for (const [i, pin] of this.options.pins.entries()) {
      // pigpio runs on a Pi 0-4 only, whose PWM block is the BCM2835's (board.ts has its pin table).
      const channel = BCM2835_PWM.channels[pin];
      // Two pins on one hardware channel would show the same duty: only the first gets it.
      const hardware = channel !== undefined && !hardwareChannels.has(channel);
      if (channel !== undefined) hardwareChannels.add(channel);
      // No `mode: OUTPUT` here: that would drive the pin at its old level before the first duty.
      // pwmWrite/hardwarePwmWrite/digitalWrite switch the pin to output themselves.
      const gpio = new pigpio.Gpio(pin);
      let range = 1_000_000;
      if (!hardware) {
        gpio.pwmFrequency(this.options.frequency);
        // Use the real range, the number of steps at this frequency and sample rate, so pigpio does
        // not rescale our duty a second time.
        range = Math.min(40_000, Math.max(25, gpio.getPwmRealRange()));
        gpio.pwmRange(range);
      }
      const output: PigpioPin = { pin, gpio, hardware, range, last: undefined };
      this.outputs.push(output);
      this.apply(output, initial[i] ?? 0);
    }
    this.options.logger.debug(
      { pins: this.outputs.map((o) => ({ pin: o.pin, hardware: o.hardware, range: o.range })) },
      "pigpio: pins open",
    );
  }

  async write(duties: readonly number[]): Promise<void> {
    this.access.checkWrite(this.options.pins, duties);
    try {
      this.outputs.forEach((output, i) => {
        this.apply(output, duties[i] ?? 0);
      });
    } catch (error) {
      throw new DriverError("io", `pigpio driver: ${errorMessage(error)}`, { cause: error });
    }
  }

  close(): Promise<void> {
    return this.access.close(() => this.release());
  }

  private apply(output: PigpioPin, duty: number): void {
    const lit = this.options.activeLow ? 1 - duty : duty;
    if (lit === 0 || lit === 1) {
      // Fully off or on is a level, not a pulse train: digitalWrite sets the level before the mode.
      const level = lit === 1 ? -1 : -2;
      if (output.last === level) return;
      output.gpio.digitalWrite(lit);
      output.last = level;
      return;
    }
    // A lit pin never rounds down to dark: the dimmest setting is one step, not off.
    const steps = Math.max(1, Math.min(output.range - 1, Math.round(lit * output.range)));
    if (output.last === steps) return;
    if (output.hardware) output.gpio.hardwarePwmWrite(this.options.frequency, steps);
    else output.gpio.pwmWrite(steps);
    output.last = steps;
  }

  /** Dark pins, then terminate(), each step on its own so one failure does not skip the rest. */
  private async release(): Promise<void> {
    const { logger, activeLow } = this.options;
    for (const output of this.outputs) {
      await bestEffort(logger, output.pin, "pigpio: switching off", () =>
        output.gpio.digitalWrite(activeLow ? 1 : 0),
      );
    }
    this.outputs = [];
    const pigpio = this.pigpio;
    if (pigpio) await bestEffort(logger, undefined, "pigpio: terminate", () => pigpio.terminate());
    this.pigpio = undefined;
  }

  private reclaimSignals(): void {
    const proc = this.deps.proc;
    for (const signal of RECLAIMED_SIGNALS) {
      const listeners = proc.listeners(signal) as NodeJS.SignalsListener[];
      if (listeners.length === 0) continue;
      proc.removeAllListeners(signal);
      for (const listener of listeners) proc.on(signal, listener);
    }
  }
}

export function createPigpioModule(overrides: Partial<PigpioDeps> = {}): DriverModule {
  const deps: PigpioDeps = { ...DEFAULT_DEPS, ...overrides };
  return {
    name: "pigpio",
    probe: (options) => availability(options, deps),
    create: (options) => new PigpioDriver(options, deps),
  };
}

export const pigpioDriver: DriverModule = createPigpioModule();

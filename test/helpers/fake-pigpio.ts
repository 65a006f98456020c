import type { PigpioGpio, PigpioModule } from "../../src/drivers/pigpio.js";

/**
 * A fake of the `pigpio` package that holds the driver to pigpio's own rules (fivdi/pigpio doc/*.md,
 * joan2937/pigpio pigpio.h), failing the way the binding fails: `Error("pigpio error <rc> in <call>")`.
 *
 * Stricter than the real binding in one place: the binding ignores gpioCfgClock's and
 * gpioCfgSocketPort's return codes, so configuring them after initialisation silently does nothing on
 * a Pi; here it throws, so a driver that does it cannot pass.
 */
const PI_BAD_USER_GPIO = -2;
const PI_BAD_LEVEL = -5;
const PI_BAD_DUTYCYCLE = -8;
const PI_BAD_DUTYRANGE = -21;
const PI_BAD_CLK_PERIPH = -15;
const PI_BAD_CLK_MICROS = -17;
const PI_BAD_IF_FLAGS = -70;
const PI_NOT_INITIALISED = -31;
const PI_INITIALISED = -32;
const PI_INIT_FAILED = -1;
const PI_NOT_HPWM_GPIO = -95;
const PI_BAD_HPWM_FREQ = -96;
const PI_BAD_HPWM_DUTY = -97;
const PI_HPWM_ILLEGAL = -100;

/** gpioSetPWMfrequency's 18 frequencies per sample rate, and the real range of each (pigpio docs). */
const FREQUENCIES: Record<number, readonly number[]> = {
  1: [40000, 20000, 10000, 8000, 5000, 4000, 2500, 2000, 1600, 1250, 1000, 800, 500, 400, 250, 200, 100, 50],
  2: [20000, 10000, 5000, 4000, 2500, 2000, 1250, 1000, 800, 625, 500, 400, 250, 200, 125, 100, 50, 25],
  4: [10000, 5000, 2500, 2000, 1250, 1000, 625, 500, 400, 313, 250, 200, 125, 100, 63, 50, 25, 13],
  5: [8000, 4000, 2000, 1600, 1000, 800, 500, 400, 320, 250, 200, 160, 100, 80, 50, 40, 20, 10],
  8: [5000, 2500, 1250, 1000, 625, 500, 313, 250, 200, 156, 125, 100, 63, 50, 31, 25, 13, 6],
  10: [4000, 2000, 1000, 800, 500, 400, 250, 200, 160, 125, 100, 80, 50, 40, 25, 20, 10, 5],
};
const REAL_RANGES = [
  25, 50, 100, 125, 200, 250, 400, 500, 625, 800, 1000, 1250, 2000, 2500, 4000, 5000, 10000, 20000,
];

function fail(rc: number, call: string): never {
  throw new Error(`pigpio error ${rc} in ${call}`);
}

interface PinState {
  /** Index into the frequency table. */
  frequencyIndex: number;
  range: number;
  /** What the pin outputs: fraction of time high. */
  output: number | undefined;
  isOutput: boolean;
}

export class FakePigpio implements PigpioModule {
  readonly CLOCK_PWM = 0;
  readonly CLOCK_PCM = 1;
  readonly DISABLE_FIFO_IF = 1;
  readonly DISABLE_SOCK_IF = 2;
  readonly LOCALHOST_SOCK_IF = 4;

  initialised = false;
  initialisations = 0;
  terminations = 0;
  sampleRate = 5;
  peripheral = 1;
  interfaces = 0;
  /** Make gpioInitialise fail (pigpiod holds the lock, not root): rc PI_INIT_FAILED. */
  failInitialise = false;
  /** Every output level each pin showed, in order. */
  readonly history = new Map<number, number[]>();
  readonly calls: string[] = [];
  private readonly pins = new Map<number, PinState>();
  readonly Gpio: PigpioModule["Gpio"];

  constructor() {
    const fake = this;
    this.Gpio = class FakeGpio implements PigpioGpio {
      constructor(
        private readonly gpio: number,
        options: { mode?: number } = {},
      ) {
        // pigpio.js initialises the library on the first Gpio object (initializePigpio()).
        fake.ensureInitialised();
        if (!Number.isInteger(gpio) || gpio < 0 || gpio > 31) fail(PI_BAD_USER_GPIO, "gpioSetMode");
        fake.pin(gpio);
        if (options.mode === 1) fake.setOutput(gpio, 0);
      }
      pwmFrequency(frequency: number): PigpioGpio {
        fake.call("gpioSetPWMfrequency", this.gpio);
        const table = FREQUENCIES[fake.sampleRate] ?? [];
        let best = 0;
        table.forEach((f, i) => {
          if (Math.abs(f - frequency) < Math.abs((table[best] ?? 0) - frequency)) best = i;
        });
        fake.pin(this.gpio).frequencyIndex = best;
        return this;
      }
      pwmRange(range: number): PigpioGpio {
        fake.call("gpioSetPWMrange", this.gpio);
        if (!Number.isInteger(range) || range < 25 || range > 40000)
          fail(PI_BAD_DUTYRANGE, "gpioSetPWMrange");
        fake.pin(this.gpio).range = range;
        return this;
      }
      getPwmRealRange(): number {
        fake.call("gpioGetPWMrealRange", this.gpio);
        return REAL_RANGES[fake.pin(this.gpio).frequencyIndex] ?? 0;
      }
      pwmWrite(dutyCycle: number): PigpioGpio {
        fake.call("gpioPWM", this.gpio);
        const state = fake.pin(this.gpio);
        if (!Number.isInteger(dutyCycle) || dutyCycle < 0 || dutyCycle > state.range) {
          fail(PI_BAD_DUTYCYCLE, "gpioPWM");
        }
        // "The real value set by pwmWrite is (dutyCycle * real range) / range."
        const real = REAL_RANGES[state.frequencyIndex] ?? 1;
        fake.setOutput(this.gpio, Math.floor((dutyCycle * real) / state.range) / real);
        return this;
      }
      hardwarePwmWrite(frequency: number, dutyCycle: number): PigpioGpio {
        fake.call("gpioHardwarePWM", this.gpio);
        if (![12, 13, 18, 19].includes(this.gpio)) fail(PI_NOT_HPWM_GPIO, "gpioHardwarePWM");
        if (fake.peripheral !== fake.CLOCK_PCM) fail(PI_HPWM_ILLEGAL, "gpioHardwarePWM");
        if (!Number.isInteger(frequency) || frequency < 0 || frequency > 125_000_000) {
          fail(PI_BAD_HPWM_FREQ, "gpioHardwarePWM");
        }
        if (!Number.isInteger(dutyCycle) || dutyCycle < 0 || dutyCycle > 1_000_000) {
          fail(PI_BAD_HPWM_DUTY, "gpioHardwarePWM");
        }
        fake.setOutput(this.gpio, frequency === 0 ? 0 : dutyCycle / 1_000_000);
        return this;
      }
      digitalWrite(level: number): PigpioGpio {
        fake.call("gpioWrite", this.gpio);
        if (level !== 0 && level !== 1) fail(PI_BAD_LEVEL, "gpioWrite");
        fake.setOutput(this.gpio, level);
        return this;
      }
    };
  }

  configureClock(microseconds: number, peripheral: number): void {
    if (this.initialised) fail(PI_INITIALISED, "gpioCfgClock");
    if (!(microseconds in FREQUENCIES)) fail(PI_BAD_CLK_MICROS, "gpioCfgClock");
    if (peripheral !== 0 && peripheral !== 1) fail(PI_BAD_CLK_PERIPH, "gpioCfgClock");
    this.sampleRate = microseconds;
    this.peripheral = peripheral;
  }

  configureInterfaces(flags: number): number {
    if (this.initialised) fail(PI_INITIALISED, "gpioCfgInterfaces");
    if (!Number.isInteger(flags) || flags < 0 || flags > 15) fail(PI_BAD_IF_FLAGS, "gpioCfgInterfaces");
    this.interfaces = flags;
    return 0;
  }

  configureSocketPort(_port: number): void {
    if (this.initialised) fail(PI_INITIALISED, "gpioCfgSocketPort");
  }

  initialize(): void {
    this.ensureInitialised();
  }

  terminate(): void {
    if (this.initialised) this.terminations += 1;
    this.initialised = false;
  }

  /** pigpio.js guards gpioInitialise with its own flag; the C library is initialised once per process. */
  private ensureInitialised(): void {
    if (this.initialised) return;
    if (this.failInitialise) fail(PI_INIT_FAILED, "gpioInitialise");
    if (this.initialisations > 0) fail(PI_INIT_FAILED, "gpioInitialise (a second time in one process)");
    this.initialisations += 1;
    this.initialised = true;
  }

  private call(name: string, gpio: number): void {
    if (!this.initialised) fail(PI_NOT_INITIALISED, name);
    this.calls.push(`${name}(${gpio})`);
  }

  private pin(gpio: number): PinState {
    let state = this.pins.get(gpio);
    if (!state) {
      // Defaults: 800 Hz (index 5 at 5 µs), range 255, an input.
      state = { frequencyIndex: 5, range: 255, output: undefined, isOutput: false };
      this.pins.set(gpio, state);
    }
    return state;
  }

  private setOutput(gpio: number, level: number): void {
    const state = this.pin(gpio);
    state.isOutput = true;
    state.output = level;
    this.history.set(gpio, [...(this.history.get(gpio) ?? []), level]);
  }
}

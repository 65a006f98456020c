import type { OnoffGpio, OnoffModule } from "../../src/drivers/onoff.js";
import type { GpioChipSpec } from "./fake-sysfs.js";

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/**
 * A fake `onoff` that behaves like onoff on the kernel's sysfs GPIO: exporting a number no gpiochip
 * has fails with EINVAL (what BCM pin N does on a 6.6+ kernel, fivdi/onoff#200), `high`/`low` set the
 * raw level and `active_low` inverts only `value` writes (gpiolib-sysfs), and an unexported Gpio's
 * file descriptor is closed (EBADF).
 */
export class FakeOnoff implements OnoffModule {
  /** Raw levels each sysfs number showed, in order, from the moment it became an output. */
  readonly history = new Map<number, number[]>();
  readonly exported = new Map<number, { activeLow: boolean }>();
  readonly unexported: number[] = [];
  /** Replaceable, so a test can make one export fail. */
  Gpio: OnoffModule["Gpio"];

  constructor(chips: readonly GpioChipSpec[]) {
    const fake = this;
    this.Gpio = class FakeGpio implements OnoffGpio {
      private closed = false;
      private readonly activeLow: boolean;

      constructor(
        private readonly number: number,
        direction: "high" | "low",
        options: { activeLow: boolean },
      ) {
        const valid = chips.some((chip) => number >= chip.base && number < chip.base + chip.ngpio);
        if (!valid) throw errno("EINVAL", `invalid argument, write '/sys/class/gpio/export' (${number})`);
        if (direction !== "high" && direction !== "low") throw errno("EINVAL", `direction ${direction}`);
        this.activeLow = options.activeLow;
        fake.exported.set(number, { activeLow: this.activeLow });
        fake.record(number, direction === "high" ? 1 : 0);
      }

      writeSync(value: 0 | 1): void {
        if (this.closed) throw errno("EBADF", "bad file descriptor, write");
        if (value !== 0 && value !== 1) throw errno("EINVAL", `value ${value}`);
        fake.record(this.number, this.activeLow ? 1 - value : value);
      }

      unexport(): void {
        if (this.closed) throw errno("EBADF", "bad file descriptor, close");
        this.closed = true;
        fake.exported.delete(this.number);
        fake.unexported.push(this.number);
      }
    };
  }

  private record(number: number, raw: number): void {
    this.history.set(number, [...(this.history.get(number) ?? []), raw]);
  }
}

import type { Logger } from "../log.js";

export const DRIVER_NAMES = ["pigpio", "sysfs-pwm", "onoff", "mock"] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

/** What every driver is built from; all of it comes from the validated Config. */
export interface DriverOptions {
  /** BCM pin numbers: one (mono) or three (red, green, blue). */
  readonly pins: readonly number[];
  /** True for a common-anode LED driven directly: the driver inverts at the pin. */
  readonly activeLow: boolean;
  /** PWM frequency in Hz. */
  readonly frequency: number;
  /** Root of the sysfs tree (`/sys`), injectable so tests can build a fake one. */
  readonly sysfsRoot: string;
  /** Mock only: append one JSON line per pin write here. */
  readonly traceFile?: string | undefined;
  /** Mock only: draw the lamp on this terminal stream. */
  readonly draw?: NodeJS.WriteStream | undefined;
  readonly logger: Logger;
}

/**
 * A lamp's pins. Duties are logical, one per pin in `pins` order: 0 is dark, 1 is fully lit, already
 * gamma-corrected. Active-low inversion is the driver's business, so nothing above it knows the wiring.
 *
 * The agent never has two calls in flight: it awaits each one before the next.
 */
export interface Driver {
  readonly name: DriverName;
  /** False for on/off outputs (relays): any duty above 0 switches the pin fully on. */
  readonly dimmable: boolean;
  /** Claims the pins. `initial` is the first thing the pins ever show: no flash at start. */
  open(initial: readonly number[]): Promise<void>;
  write(duties: readonly number[]): Promise<void>;
  /** Releases the pins. Safe to call twice; every call after the first does nothing. */
  close(): Promise<void>;
}

/** Whether a driver can run here, and if not, why, in one or two lines a user can act on. */
export type Availability =
  | {
      readonly ok: true;
      readonly detail?: string;
      /** Some pin's timing is software (pwm-gpio's hrtimer): `auto` prefers pigpio's DMA then. */
      readonly softwareTimed?: boolean;
    }
  | { readonly ok: false; readonly reason: string };

export interface DriverModule {
  readonly name: DriverName;
  /** Cheap, side-effect-free check used by `auto` and `--check`. */
  probe(options: DriverOptions): Promise<Availability>;
  create(options: DriverOptions): Driver;
}

/** Errors a driver raises carry a code so callers can tell configuration from hardware faults. */
export class DriverError extends Error {
  constructor(
    readonly code: "unavailable" | "closed" | "invalid_duty" | "invalid_pin" | "already_open" | "busy" | "io",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "DriverError";
  }
}

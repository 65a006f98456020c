import type { Logger } from "../log.js";
import { DriverError, type DriverName } from "./driver.js";

/**
 * The Driver contract (driver.ts) as code every driver shares: valid duties, one open, writes only
 * while open, close safe to repeat, and errors that say which driver failed.
 */

/** An error's message for a log line or a DriverError: what failed, without the stack. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What a failed open() throws: a DriverError as it is, anything else as an `io` error of this driver. */
export function asDriverError(error: unknown, context: string): DriverError {
  if (error instanceof DriverError) return error;
  return new DriverError("io", `${context}: ${errorMessage(error)}`, { cause: error });
}

/**
 * One step of giving the pins back (switching off, unexporting), on its own: a failure is logged and
 * the next step still runs, so one stuck pin cannot keep the others lit.
 */
export async function bestEffort(
  logger: Logger,
  pin: number | undefined,
  what: string,
  step: () => unknown,
): Promise<void> {
  try {
    await step();
  } catch (error) {
    logger.warn({ pin, err: errorMessage(error) }, `${what} failed`);
  }
}

/** Duties must be one finite number in 0..1 per pin, for every driver. */
export function checkDuties(name: DriverName, pins: readonly number[], duties: readonly number[]): void {
  if (duties.length !== pins.length) {
    throw new DriverError("invalid_duty", `${name} driver: ${duties.length} duties for ${pins.length} pins`);
  }
  for (const duty of duties) {
    if (typeof duty !== "number" || !Number.isFinite(duty) || duty < 0 || duty > 1) {
      throw new DriverError("invalid_duty", `${name} driver: duty ${duty} is outside 0..1`);
    }
  }
}

/** Access to the pins every driver shares: one open, writes only while open, one call at a time, close idempotent. */
export class PinAccess {
  private phase: "new" | "opening" | "open" | "closed" = "new";
  private inFlight: string | undefined;

  constructor(private readonly name: DriverName) {}

  get isOpen(): boolean {
    return this.phase === "open";
  }

  /**
   * A driver's open(): `claim` takes the pins. If it fails, `release` gives back whatever it took, the
   * pins stay closed (they cannot be opened again), and the error becomes a DriverError of `context`.
   */
  async open(context: string, claim: () => Promise<void>, release: () => Promise<void>): Promise<void> {
    this.beginOpen();
    try {
      await claim();
    } catch (error) {
      await release();
      this.failed();
      throw asDriverError(error, context);
    }
    this.opened();
  }

  /** A driver's close(): `release` the first time only, as close() is safe to call twice. */
  async close(release: () => Promise<void>): Promise<void> {
    if (this.beginClose()) await release();
  }

  /** A write's preconditions: the pins are open, and the duties are valid for them. */
  checkWrite(pins: readonly number[], duties: readonly number[]): void {
    this.assertOpen();
    checkDuties(this.name, pins, duties);
  }

  beginOpen(): void {
    if (this.phase === "open" || this.phase === "opening") {
      throw new DriverError("already_open", `${this.name} driver: pins are already open`);
    }
    if (this.phase === "closed") {
      throw new DriverError("closed", `${this.name} driver: cannot reopen closed pins`);
    }
    this.phase = "opening";
  }

  opened(): void {
    this.phase = "open";
  }

  /** A failed open leaves the driver closed: whatever it claimed has been released. */
  failed(): void {
    this.phase = "closed";
  }

  assertOpen(): void {
    if (this.phase !== "open") {
      throw new DriverError(
        "closed",
        `${this.name} driver: write while pins are ${this.phase === "closed" ? "closed" : "not open"}`,
      );
    }
  }

  /** True the first time only: close() is safe to call twice. */
  beginClose(): boolean {
    const wasActive = this.phase === "open" || this.phase === "opening";
    this.phase = "closed";
    return wasActive;
  }

  /**
   * Runs `call` as the only call in flight, the agent's side of the contract ("it awaits each one
   * before the next"): a second call meanwhile is refused with `busy` instead of interleaving. The
   * mock enforces this so that a test catches an agent that breaks it (serialport's binding-mock
   * refuses overlapping writes the same way).
   */
  exclusive<T>(what: string, call: () => Promise<T>): Promise<T> {
    if (this.inFlight !== undefined) {
      return Promise.reject(
        new DriverError("busy", `${this.name} driver: ${what} while ${this.inFlight} is still in flight`),
      );
    }
    this.inFlight = what;
    let result: Promise<T>;
    try {
      result = call();
    } catch (error) {
      this.inFlight = undefined;
      return Promise.reject(error);
    }
    // Not an async function around `await call()`, and no closure per call: this runs for every pin
    // write, and each promise and function made for it is part of a command's cost.
    return result.then(this.callSettled, this.callFailed);
  }

  private readonly callSettled = <T>(value: T): T => {
    this.inFlight = undefined;
    return value;
  };

  private readonly callFailed = (error: unknown): never => {
    this.inFlight = undefined;
    throw error;
  };
}

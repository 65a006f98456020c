import { DriverError, type DriverName } from "./driver.js";

/**
 * The Driver contract (driver.ts) as code every driver shares: valid duties, one open, writes only
 * while open, close safe to repeat, and errors that say which driver failed.
 */

/** An error's message for a log line or a DriverError: what failed, without the stack. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What a failed open() throws: a DriverError as it is, anything else as an `io` error of this driver. */
export function asDriverError(error: unknown, context: string): DriverError {
  if (error instanceof DriverError) return error;
  return new DriverError("io", `${context}: ${describe(error)}`, { cause: error });
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

/** The open/closed life cycle every driver shares: one open, writes while open, close idempotent. */
export class Lifecycle {
  private phase: "new" | "opening" | "open" | "closed" = "new";
  private inFlight: string | undefined;

  constructor(private readonly name: DriverName) {}

  get isOpen(): boolean {
    return this.phase === "open";
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
  async exclusive<T>(what: string, call: () => Promise<T>): Promise<T> {
    if (this.inFlight !== undefined) {
      throw new DriverError("busy", `${this.name} driver: ${what} while ${this.inFlight} is still in flight`);
    }
    this.inFlight = what;
    try {
      return await call();
    } finally {
      this.inFlight = undefined;
    }
  }
}

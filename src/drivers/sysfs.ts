import { constants } from "node:fs";
import * as fsp from "node:fs/promises";
import { DriverError, type DriverName } from "./driver.js";

/**
 * The file operations the sysfs drivers make, and nothing else. The real one is `node:fs/promises`;
 * tests pass a wrapper around it that behaves like the kernel (creating `pwmN/` on `export`, refusing
 * a duty above the period, EACCES until "udev" has run), so the driver code under test is the real code
 * and only the OS boundary is fake.
 */
export interface SysfsIO {
  readFile(file: string): Promise<string>;
  /** Binary device-tree properties (`of_node/gpios`). */
  readBytes(file: string): Promise<Uint8Array>;
  writeFile(file: string, data: string): Promise<void>;
  readdir(dir: string): Promise<string[]>;
  realpath(file: string): Promise<string>;
  /** Rejects when `file` cannot be opened for writing by this process. */
  checkWritable(file: string): Promise<void>;
  exists(file: string): Promise<boolean>;
}

export const nodeSysfs: SysfsIO = {
  readFile: (file) => fsp.readFile(file, "utf8"),
  readBytes: (file) => fsp.readFile(file),
  writeFile: (file, data) => fsp.writeFile(file, data),
  readdir: (dir) => fsp.readdir(dir),
  realpath: (file) => fsp.realpath(file),
  checkWritable: (file) => fsp.access(file, constants.W_OK),
  exists: async (file) => {
    try {
      await fsp.access(file);
      return true;
    } catch {
      return false;
    }
  },
};

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** An error's message for a log line or a DriverError: what failed, without the stack. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What a failed open() throws: a DriverError as it is, anything else as an `io` error of this driver. */
export function asDriverError(error: unknown, context: string): DriverError {
  if (error instanceof DriverError) return error;
  return new DriverError("io", `${context}: ${describe(error)}`, { cause: error });
}

export function errnoCode(error: unknown): string | undefined {
  return error !== null && typeof error === "object" && "code" in error
    ? String((error as { code: unknown }).code)
    : undefined;
}

/**
 * Runs `step` until it stops failing with EACCES/EPERM/ENOENT, for at most `timeoutMs`. Right after an
 * `export` the kernel creates the new directory owned by root, and only then does udev run the rule
 * that hands it to group gpio: writes in between fail (raspberrypi/linux#6818; onoff does the same
 * dance, fivdi/onoff `waitForGpioAccessPermission`). Any other error, or the deadline, is final.
 */
export async function retryWhileSettling<T>(
  step: () => Promise<T>,
  clock: Clock,
  timeoutMs: number,
  intervalMs = 10,
): Promise<T> {
  const deadline = clock.now() + timeoutMs;
  for (;;) {
    try {
      return await step();
    } catch (error) {
      const code = errnoCode(error);
      const transient = code === "EACCES" || code === "EPERM" || code === "ENOENT";
      if (!transient || clock.now() >= deadline) throw error;
      await clock.sleep(intervalMs);
    }
  }
}

/** Duties must be one finite number in 0..1 per pin; shared by every real driver. */
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
}

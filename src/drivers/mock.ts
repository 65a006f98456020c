import { closeSync, openSync, writeSync } from "node:fs";
import { statusLine } from "../status-line.js";
import { asDriverError, checkDuties, PinAccess } from "./contract.js";
import type { Driver, DriverModule, DriverOptions } from "./driver.js";

/**
 * Hardware answers later: resolve on the next tick, never within the caller's own code (binding-mock's
 * `resolveNextTick`). A tick, not a timer, so tests with fake timers still see every write.
 */
const nextTurn = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

/** The newest writes kept in `writes`; older ones are dropped (the trace file keeps everything). */
export const MAX_RECORDED = 10_000;

export interface MockWrite {
  /** Milliseconds since the driver was opened. */
  readonly t: number;
  readonly pin: number;
  readonly duty: number;
}

/**
 * A lamp without hardware that holds the agent to the whole Driver contract, as serialport's
 * binding-mock does for a port: it refuses what real pins refuse (use before open or after close, a
 * second open, a duty outside 0..1), refuses a call while another is still in flight (`busy`), and
 * completes every call asynchronously, on the next tick, as hardware I/O does. So the
 * agent cannot get away with anything here that would fail, or race, on a Pi.
 */
export class MockDriver implements Driver {
  readonly name = "mock" as const;
  readonly dimmable = true;
  /** Every pin write, in order, for tests. */
  readonly writes: MockWrite[] = [];
  private readonly access = new PinAccess("mock");
  private openedAt = 0;
  private trace: number | undefined;
  private last: readonly number[] = [];

  constructor(private readonly options: DriverOptions) {}

  /** The duties the pins show now (logical: 1 is fully lit). */
  get duties(): readonly number[] {
    return this.last;
  }

  open(initial: readonly number[]): Promise<void> {
    return this.access.exclusive("open", async () => {
      this.access.beginOpen();
      try {
        checkDuties(this.name, this.options.pins, initial);
        await nextTurn();
        // Opened once, like a pin: three syscalls per write would cost more than the agent's own work.
        if (this.options.traceFile) this.trace = openSync(this.options.traceFile, "a");
      } catch (error) {
        this.access.failed();
        throw asDriverError(error, "mock driver: cannot open");
      }
      this.access.opened();
      this.openedAt = performance.now();
      this.apply(initial);
    });
  }

  write(duties: readonly number[]): Promise<void> {
    return this.access.exclusive("write", async () => {
      this.access.checkWrite(this.options.pins, duties);
      await nextTurn();
      this.apply(duties);
    });
  }

  close(): Promise<void> {
    return this.access.exclusive("close", async () => {
      const wasOpen = this.access.isOpen;
      if (!this.access.beginClose()) return;
      await nextTurn();
      if (wasOpen && this.options.draw) statusLine.clear();
      if (this.trace !== undefined) closeSync(this.trace);
      this.trace = undefined;
    });
  }

  private apply(duties: readonly number[]): void {
    const t = Math.round((performance.now() - this.openedAt) * 1000) / 1000;
    const lines: string[] = [];
    this.options.pins.forEach((pin, i) => {
      // Only pins whose duty changed are written, as on real hardware; the first write sets them all.
      const duty = duties[i] ?? 0;
      if (this.last.length > 0 && this.last[i] === duty) return;
      // Bounded: a demo left running for days must not grow without end. One shift() per push, not a
      // splice: V8 moves the array's start instead of copying 10,000 entries on every pin write.
      if (this.writes.length >= MAX_RECORDED) this.writes.shift();
      this.writes.push({ t, pin, duty });
      if (this.options.traceFile) lines.push(`${JSON.stringify({ t, pin, duty })}\n`);
    });
    this.last = [...duties];
    if (this.trace !== undefined && lines.length > 0) writeSync(this.trace, lines.join(""));
    if (this.options.draw) statusLine.set(this.options.draw, swatch(duties));
  }
}

// PWM duty is linear light; a terminal colour is sRGB-encoded, so encode before drawing.
const encode = (duty: number): number => Math.round(255 * duty ** (1 / 2.2));

export function swatch(duties: readonly number[]): string {
  const [r, g, b] = duties.length === 3 ? duties.map(encode) : [0, 0, 0].map(() => encode(duties[0] ?? 0));
  const lit = duties.some((d) => d > 0);
  const block = `\x1b[48;2;${r};${g};${b}m${" ".repeat(12)}\x1b[0m`;
  const label = duties.map((d) => d.toFixed(3)).join(" ");
  return `lamp ${block} ${lit ? "lit " : "dark"}  duty ${label}`;
}

export const mockDriver: DriverModule = {
  name: "mock",
  async probe() {
    return { ok: true, detail: "no hardware: writes are recorded (and drawn on a terminal)" };
  },
  create(options) {
    return new MockDriver(options);
  },
};

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
  // The newest MAX_RECORDED writes, in a ring of typed arrays: a demo left running for days must not
  // grow without end, and the ring allocates nothing per write. An array trimmed from the front (splice,
  // then shift()) cost the steady state's command more than the rest of the lamp did, and a ring of
  // objects kept every write alive for thousands of commands: V8 moved each one to its old generation,
  // and collected that generation every few hundred commands, in pauses of milliseconds
  // (docs/performance.md). Pages of these arrays not yet written cost no memory.
  private readonly times = new Float64Array(MAX_RECORDED);
  private readonly pinNumbers = new Int32Array(MAX_RECORDED);
  private readonly dutyValues = new Float64Array(MAX_RECORDED);
  private recorded = 0;
  private next = 0;
  private readonly access = new PinAccess("mock");
  private openedAt = 0;
  private trace: number | undefined;
  private last: readonly number[] = [];

  constructor(private readonly options: DriverOptions) {}

  /** Every pin write still recorded, oldest first, for tests. */
  get writes(): readonly MockWrite[] {
    const oldest = this.recorded < MAX_RECORDED ? 0 : this.next;
    return Array.from({ length: this.recorded }, (_, k) => {
      const i = (oldest + k) % MAX_RECORDED;
      return { t: this.times[i] ?? 0, pin: this.pinNumbers[i] ?? 0, duty: this.dutyValues[i] ?? 0 };
    });
  }

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
    return this.access.exclusive("write", () => {
      this.access.checkWrite(this.options.pins, duties);
      // One promise settled on the next tick, as nextTurn() then apply() would be, without an async
      // function's own: a steady command writes the pins once.
      return new Promise<void>((resolve, reject) =>
        process.nextTick(this.applyLater, duties, resolve, reject),
      );
    });
  }

  private readonly applyLater = (
    duties: readonly number[],
    resolve: () => void,
    reject: (error: unknown) => void,
  ): void => {
    try {
      this.apply(duties);
      resolve();
    } catch (error) {
      reject(error);
    }
  };

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
    const { pins } = this.options;
    const first = this.last.length === 0;
    let lines = "";
    for (let i = 0; i < pins.length; i++) {
      // Only pins whose duty changed are written, as on real hardware; the first write sets them all.
      const duty = duties[i] ?? 0;
      if (!first && this.last[i] === duty) continue;
      const pin = pins[i] ?? 0;
      this.record(t, pin, duty);
      // The trace's JSON by hand: the bench reads it, and stringifying an object per pin cost more
      // than the write itself. Finite numbers print the same either way.
      if (this.trace !== undefined) lines += `{"t":${t},"pin":${pin},"duty":${duty}}\n`;
    }
    this.last = duties.slice();
    if (this.trace !== undefined && lines.length > 0) writeSync(this.trace, lines);
    if (this.options.draw) statusLine.set(this.options.draw, swatch(duties));
  }

  private record(t: number, pin: number, duty: number): void {
    this.times[this.next] = t;
    this.pinNumbers[this.next] = pin;
    this.dutyValues[this.next] = duty;
    this.next = (this.next + 1) % MAX_RECORDED;
    if (this.recorded < MAX_RECORDED) this.recorded++;
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

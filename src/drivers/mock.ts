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
  // The newest MAX_RECORDED writes, in a ring: a demo left running for days must not grow without end,
  // and a ring costs nothing per write, where an array trimmed from the front (splice, then shift())
  // cost the steady state's command more than the rest of the lamp did (docs/performance.md).
  private readonly recorded: MockWrite[] = [];
  private next = 0;
  private readonly access = new PinAccess("mock");
  private openedAt = 0;
  private trace: number | undefined;
  private last: readonly number[] = [];

  constructor(private readonly options: DriverOptions) {}

  /** Every pin write still recorded, oldest first, for tests. */
  get writes(): readonly MockWrite[] {
    const { recorded, next } = this;
    return recorded.length < MAX_RECORDED
      ? [...recorded]
      : [...recorded.slice(next), ...recorded.slice(0, next)];
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
        process.nextTick(() => {
          try {
            this.apply(duties);
            resolve();
          } catch (error) {
            reject(error);
          }
        }),
      );
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
    const { pins } = this.options;
    const first = this.last.length === 0;
    let lines = "";
    for (let i = 0; i < pins.length; i++) {
      // Only pins whose duty changed are written, as on real hardware; the first write sets them all.
      const duty = duties[i] ?? 0;
      if (!first && this.last[i] === duty) continue;
      const pin = pins[i] ?? 0;
      this.record({ t, pin, duty });
      // The trace's JSON by hand: the bench reads it, and stringifying an object per pin cost more
      // than the write itself. Finite numbers print the same either way.
      if (this.trace !== undefined) lines += `{"t":${t},"pin":${pin},"duty":${duty}}\n`;
    }
    this.last = duties.slice();
    if (this.trace !== undefined && lines.length > 0) writeSync(this.trace, lines);
    if (this.options.draw) statusLine.set(this.options.draw, swatch(duties));
  }

  private record(write: MockWrite): void {
    if (this.recorded.length < MAX_RECORDED) this.recorded.push(write);
    else this.recorded[this.next] = write;
    this.next = (this.next + 1) % MAX_RECORDED;
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

import type { Driver } from "../drivers/driver.js";
import type { Logger } from "../log.js";
import { toDuty } from "./colour.js";

/** Fade steps per second: smooth to the eye, and cheap on a Pi Zero. */
export const FADE_HZ = 50;

export interface OutputOptions {
  readonly gamma: number;
  readonly logger: Logger;
  /** Monotonic milliseconds; injectable so tests can drive time. */
  readonly now?: () => number;
}

interface Fade {
  readonly from: readonly number[];
  readonly to: readonly number[];
  readonly start: number;
  readonly duration: number;
}

/**
 * Owns what the pins show. Targets arrive as perceptual levels; fades run between them at FADE_HZ; and
 * writes are coalesced: at most one driver call is in flight, and whatever arrives meanwhile collapses
 * into one write of the newest levels. So a burst or a reconnect backlog never makes the lamp flash
 * through stale values or fall behind.
 */
export class Output {
  private levels: number[] = [];
  private fade: Fade | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  /** A write of what came while the last one was in flight is due on the next turn. */
  private deferred = false;
  private dirty = false;
  private lastDuties: readonly number[] = [];
  private closed = false;
  private held = false;
  private failing = false;
  private readonly now: () => number;

  constructor(
    private readonly driver: Driver,
    private readonly options: OutputOptions,
  ) {
    this.now = options.now ?? (() => performance.now());
  }

  /** The levels shown now, or mid-fade, where the fade has got to. */
  get current(): readonly number[] {
    return this.levels;
  }

  /** Pin writes handed to the driver since open (not counting open itself). */
  writes = 0;

  /** The first thing the pins show is `levels`: no flash of a default at start. */
  async open(levels: readonly number[]): Promise<void> {
    this.levels = [...levels];
    this.lastDuties = this.duties();
    await this.driver.open(this.lastDuties);
  }

  /** Go to `levels`, fading over `durationMs` from wherever the light is now. */
  setTarget(levels: readonly number[], durationMs: number): void {
    if (this.closed) return;
    this.advance();
    if (durationMs <= 0) {
      this.stopFade();
      this.levels = [...levels];
    } else {
      this.fade = { from: [...this.levels], to: [...levels], start: this.now(), duration: durationMs };
      this.ticker ??= setInterval(() => {
        this.advance();
        this.schedule();
      }, 1000 / FADE_HZ);
    }
    this.schedule();
  }

  /**
   * Keeps new targets off the pins until release(): used while a reconnect backlog is being read, which
   * a broker hands over in batches (Mosquitto sends 20 QoS 1 messages at a time), so that only the last
   * command of the whole backlog is shown.
   */
  hold(): void {
    this.held = true;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    if (this.dirty) this.schedule();
  }

  /** Waits for the fade to be cancelled and the last write to land, then stops writing for good. */
  async close(): Promise<void> {
    this.advance();
    this.stopFade();
    this.closed = true;
    await this.inFlight;
    // The newest target must reach the pins before they are released.
    while (this.dirty) await this.writeOnce();
  }

  private advance(): void {
    const fade = this.fade;
    if (!fade) return;
    const progress = Math.min(1, (this.now() - fade.start) / fade.duration);
    this.levels = fade.to.map((to, i) => {
      const from = fade.from[i] ?? to;
      return from + (to - from) * progress;
    });
    if (progress >= 1) this.stopFade();
  }

  private stopFade(): void {
    this.fade = undefined;
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  private duties(): number[] {
    const { levels } = this;
    const duties = new Array<number>(levels.length);
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i] ?? 0;
      // White (every channel at one level) is one gamma power, not three.
      duties[i] = i > 0 && level === levels[i - 1] ? (duties[i - 1] ?? 0) : toDuty(level, this.options.gamma);
    }
    return duties;
  }

  // The newest levels go to the pins at once when the output is idle, in the command's own turn: a
  // steady stream of commands then costs no extra turn of the event loop per command (a setImmediate
  // here cost each command more than the write itself, docs/performance.md). What arrives while that
  // write is in flight goes out on the next turn, with everything else that turn brings, so a burst
  // becomes one write per turn of the loop; a reconnect backlog is held (hold()) and becomes one write.
  private schedule(): void {
    this.dirty = true;
    if (this.inFlight || this.deferred || this.closed || this.held) return;
    this.inFlight = this.writeOnce();
  }

  /**
   * Writes the newest levels if they differ from what the pins show: the write's promise, which never
   * rejects, or undefined when there was nothing to write. A plain promise chain, not an async
   * function: this runs for every command, and each promise and resumption is part of its cost.
   */
  private writeOnce(): Promise<void> | undefined {
    this.dirty = false;
    const duties = this.duties();
    if (sameDuties(duties, this.lastDuties)) return undefined;
    this.lastDuties = duties;
    this.writes++;
    let write: Promise<void>;
    try {
      write = this.driver.write(duties);
    } catch (error) {
      write = Promise.reject(error);
    }
    return write.then(this.wrote, this.writeFailed);
  }

  // Made once, not per write.
  private readonly wrote = (): void => {
    if (this.failing) this.options.logger.info("pin writes work again");
    this.failing = false;
    this.afterWrite();
  };

  private readonly writeFailed = (error: unknown): void => {
    // Logged once per failure streak: a broken pin must not flood the journal 50 times a second.
    if (!this.failing) this.options.logger.error({ err: error }, "could not write the pins");
    this.failing = true;
    this.lastDuties = [];
    this.afterWrite();
  };

  private afterWrite(): void {
    this.inFlight = undefined;
    if (!this.dirty || this.closed || this.held) return;
    this.deferred = true;
    setImmediate(this.writeDeferred);
  }

  private readonly writeDeferred = (): void => {
    this.deferred = false;
    if (this.dirty) this.schedule();
  };
}

function sameDuties(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

import { Blink } from "./blink.js";
import { levelsFor } from "./colour.js";
import { applyCommand, type Command } from "./command.js";
import type { Output } from "./output.js";
import { type LampState, sameState } from "./state.js";

/**
 * The lamp: its state, and the output that shows it. Knows nothing of MQTT or files: whoever keeps the
 * state (the store) hears of every change through `onChange`, whatever applied it.
 */
export class Lamp {
  private current: LampState;
  private readonly blink: Blink;

  constructor(
    private readonly output: Output,
    private readonly channels: 1 | 3,
    initial: LampState,
    /** Seconds, used when a command has no `transition`. */
    private readonly defaultTransition: number,
    private readonly onChange: (state: LampState) => void = () => undefined,
  ) {
    this.current = initial;
    this.blink = new Blink(
      (lit) => this.output.setTarget(new Array<number>(this.channels).fill(lit ? 1 : 0), 0),
      () => this.show(0),
    );
  }

  get state(): LampState {
    return this.current;
  }

  /** Pins show the initial state on their first write. */
  async open(): Promise<void> {
    await this.output.open(levelsFor(this.current, this.channels));
  }

  /**
   * Applies a command; returns the new state, or undefined when it changes nothing (a no-op). Any other
   * command during an identify blink ends it: the lamp shows its state again at once.
   */
  apply(command: Command): LampState | undefined {
    if (command.identify) this.blink.start();
    else if (this.blink.running) {
      this.blink.cancel();
      this.show(0);
    }
    const next = applyCommand(this.current, command);
    if (sameState(next, this.current)) return undefined;
    this.current = next;
    // Mid-blink the new state waits for the blink's end, which shows it.
    if (!this.blink.running) this.show((command.transition ?? this.defaultTransition) * 1000);
    this.onChange(next);
    return next;
  }

  /** Whether an identify blink is running. */
  get identifying(): boolean {
    return this.blink.running;
  }

  private show(durationMs: number): void {
    this.output.setTarget(levelsFor(this.current, this.channels), durationMs);
  }

  /** See Output.hold(): the state keeps changing, the pins wait. */
  hold(): void {
    this.output.hold();
  }

  release(): void {
    this.output.release();
  }

  async close(): Promise<void> {
    if (this.blink.running) {
      this.blink.cancel();
      this.show(0);
    }
    await this.output.close();
  }
}

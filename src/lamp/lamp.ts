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

  constructor(
    private readonly output: Output,
    private readonly channels: 1 | 3,
    initial: LampState,
    /** Seconds, used when a command has no `transition`. */
    private readonly defaultTransition: number,
    private readonly onChange: (state: LampState) => void = () => undefined,
  ) {
    this.current = initial;
  }

  get state(): LampState {
    return this.current;
  }

  /** Pins show the initial state on their first write. */
  async open(): Promise<void> {
    await this.output.open(levelsFor(this.current, this.channels));
  }

  /** Applies a command; returns the new state, or undefined when it changes nothing (a no-op). */
  apply(command: Command): LampState | undefined {
    const next = applyCommand(this.current, command);
    if (sameState(next, this.current)) return undefined;
    this.current = next;
    const seconds = command.transition ?? this.defaultTransition;
    this.output.setTarget(levelsFor(next, this.channels), seconds * 1000);
    this.onChange(next);
    return next;
  }

  /** See Output.hold(): the state keeps changing, the pins wait. */
  hold(): void {
    this.output.hold();
  }

  release(): void {
    this.output.release();
  }

  async close(): Promise<void> {
    await this.output.close();
  }
}

/** How long `identify` blinks, and how fast: about 5 s, a second a cycle, easy to see across a room. */
export const BLINK_MS = 5000;
export const BLINK_HALF_PERIOD_MS = 500;

/**
 * The identify blink: full on and off in turn for BLINK_MS, then `done`. Calls `show(true|false)` for
 * each half period; cancel() stops it without calling `done`.
 */
export class Blink {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly show: (lit: boolean) => void,
    private readonly done: () => void,
  ) {}

  get running(): boolean {
    return this.timer !== undefined;
  }

  start(): void {
    this.cancel();
    let step = 0;
    const tick = (): void => {
      if (step * BLINK_HALF_PERIOD_MS >= BLINK_MS) {
        this.timer = undefined;
        this.done();
        return;
      }
      this.show(step % 2 === 0);
      step++;
      this.timer = setTimeout(tick, BLINK_HALF_PERIOD_MS);
    };
    tick();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

/** The first delay after a loss spreads over this many times `initialMs`: see next(). */
const FIRST_SPREAD = 8;

/**
 * Reconnect delays, jittered from the very first one. A fleet loses its broker all at once (a restart, a
 * node of a cluster dying), and with MQTT.js's fixed period, or a ±20 % jitter on a one-second delay, it
 * comes back within one second: a stampede (18 of 29 lamps in the same second, measured on a cluster).
 * So each delay is drawn between a tenth of its ceiling and the ceiling, which starts at
 * FIRST_SPREAD × `initialMs` and doubles per attempt up to `maxMs` ("full jitter", as EMQX and AWS
 * recommend): a fleet's first tries spread over seconds, and a lone lamp's first retry is still quick.
 */
export class ReconnectBackoff {
  private attempt = 0;
  /** The ceiling the last delay was drawn under: what grows, while the delays themselves are random. */
  ceiling = 0;

  constructor(
    private readonly range: Backoff,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call counts as one attempt. */
  next(): number {
    this.ceiling = Math.min(this.range.maxMs, this.range.initialMs * FIRST_SPREAD * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(this.ceiling * (0.1 + 0.9 * this.random()));
  }

  /** After a connection that held: the next failure starts again from the first ceiling. */
  reset(): void {
    this.attempt = 0;
  }
}

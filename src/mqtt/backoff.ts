export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

/**
 * Reconnect delays: doubling from `initialMs` to `maxMs`, each with ±20 % jitter so a fleet does not
 * reconnect in step after a broker restart. MQTT.js's own reconnect is a fixed period.
 */
export class ReconnectBackoff {
  private attempt = 0;

  constructor(
    private readonly range: Backoff,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call counts as one attempt. */
  next(): number {
    const delay = Math.min(this.range.maxMs, this.range.initialMs * 2 ** this.attempt);
    this.attempt++;
    return this.jitter(delay);
  }

  /** After a connection that held: the next failure starts again from `initialMs`. */
  reset(): void {
    this.attempt = 0;
  }

  /** The longest delay, and from here on until reset() (another client holds our session). */
  longest(): number {
    this.attempt = Math.ceil(Math.log2(this.range.maxMs / this.range.initialMs));
    return this.next();
  }

  private jitter(delay: number): number {
    return Math.round(delay * (0.8 + this.random() * 0.4));
  }
}

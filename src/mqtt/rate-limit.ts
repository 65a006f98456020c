/**
 * A token bucket: `burst` at once, then `perSecond`. Keeps a flood of bad input from becoming a flood
 * of error messages and log lines.
 */
export class RateLimiter {
  private tokens: number;
  private last: number;
  /** How many were refused since the last one allowed. */
  suppressed = 0;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** True when one more may go; otherwise counts it as suppressed. */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.suppressed++;
    return false;
  }
}

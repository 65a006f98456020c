/** MQTT 5 reason code 0x8E, "Session taken over": another client connected with our client id. */
export const SESSION_TAKEN_OVER = 0x8e;

/**
 * Tells a session taken over by another client with our client id (two Pis with one LAMP_ID) from a
 * broker that went away. MQTT 5 says so in the DISCONNECT (reason 0x8E); Mosquitto 2.0 and any 3.1.1
 * broker just close the socket, as they do when they stop. What a stop never does is close us twice
 * in a row right after a CONNACK without a failed attempt in between: a stopped broker refuses the
 * next attempt. Once a takeover is seen, every close counts as one until the other client is gone
 * (a failed attempt, or a session that lasted well past its reconnect delay).
 */
export class TakeoverDetector {
  private quickCloses = 0;
  private suspected = false;

  constructor(
    /** A session closed sooner than this after its CONNACK was closed "right after connect". */
    private readonly quickMs: number,
    /** A session that lasted this long means the other client stopped coming back. */
    private readonly clearMs: number,
  ) {}

  /** A connection attempt failed (refused, unreachable): the broker is down, nobody took us over. */
  failedAttempt(): void {
    this.quickCloses = 0;
    this.suspected = false;
  }

  /**
   * An established session closed; `reason` is the DISCONNECT reason code when the broker sent one.
   * True when it was (most likely) taken over.
   */
  closed(lastedMs: number, reason: number | undefined): boolean {
    if (reason === SESSION_TAKEN_OVER) return this.suspect();
    if (reason !== undefined || lastedMs >= this.clearMs) return this.clear();
    if (this.suspected) return true;
    if (lastedMs >= this.quickMs) return this.clear();
    this.quickCloses++;
    return this.quickCloses >= 2 ? this.suspect() : false;
  }

  private suspect(): true {
    this.suspected = true;
    return true;
  }

  private clear(): false {
    this.quickCloses = 0;
    this.suspected = false;
    return false;
  }
}

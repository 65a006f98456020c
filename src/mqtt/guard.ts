/** How long an echo of our own publish may take to come back before we stop expecting it. */
const ECHO_TTL_MS = 10_000;
const MAX_PENDING_ECHOES = 64;

/**
 * The application half of the feedback guard (the topic design and MQTT 5 No Local are the other
 * half; No Local alone is not enough, brokers have had bugs: eclipse-mosquitto/mosquitto#2871).
 *
 * - Commands that name us as their `client` are ours: dropped.
 * - When commands and state share a topic, every state we publish comes back to us on 3.1.1. The exact
 *   bytes we published are remembered briefly and their echo is dropped, so a stale echo cannot undo
 *   a newer command that arrived in between.
 */
export class FeedbackGuard {
  private readonly pending: { payload: string; expires: number }[] = [];

  constructor(
    readonly clientId: string,
    /** True when our state messages arrive on the topic we take commands from. */
    private readonly echoesComeBack: boolean,
    private readonly now: () => number = Date.now,
  ) {}

  isOwnClient(client: string | null | undefined): boolean {
    return client === this.clientId;
  }

  /** Call for every state payload published. */
  published(payload: string): void {
    if (!this.echoesComeBack) return;
    this.prune();
    if (this.pending.length >= MAX_PENDING_ECHOES) this.pending.shift();
    this.pending.push({ payload, expires: this.now() + ECHO_TTL_MS });
  }

  /** True (and forgotten) when this command payload is the echo of a state we published. */
  isOwnEcho(payload: Buffer): boolean {
    if (this.pending.length === 0) return false;
    this.prune();
    const text = payload.toString("utf8");
    const index = this.pending.findIndex((entry) => entry.payload === text);
    if (index < 0) return false;
    // Echoes arrive in publish order; anything older than this one will not come back any more.
    this.pending.splice(0, index + 1);
    return true;
  }

  private prune(): void {
    const now = this.now();
    while (this.pending.length > 0 && (this.pending[0]?.expires ?? 0) < now) this.pending.shift();
  }
}

import type { Logger } from "../log.js";
import { describeMqttError } from "../mqtt/errors.js";
import { RateLimiter } from "../mqtt/rate-limit.js";
import { OFFLINE, ONLINE } from "../protocol/payloads.js";
import type { ConnectInfo, Feature, MqttPort } from "./feature.js";

/** How long a `0` waits for its answer: see message(). */
const ANSWER_AFTER_MS = 300;

export interface PresenceContext {
  readonly topic: string;
  readonly mqtt: MqttPort;
  readonly logger: Logger;
}

/**
 * A `0` this soon after the CONNACK is from before the connection: our own last Will, queued in the kept
 * session, or the Will of the connection our CONNECT took over. Answered with a debug line, not a warning.
 */
const FROM_BEFORE_MS = 2000;

/**
 * `state/<id>`: the Will `0` is set in CONNECT (mqtt/connection.ts); this says `1` once the lamp listens,
 * and `0` itself before a clean stop (a clean DISCONNECT fires no Will). It also keeps `1` true: a
 * cluster may publish the Will of a dead node's client late, after the lamp reconnected elsewhere (Aedes
 * sweeps them heartbeats later: moscajs/aedes#756), or a takeover may; a live `0` we did not send is
 * answered with `1`, rate-limited so two agents given one id cannot turn it into a storm.
 */
export class Presence implements Feature {
  readonly name = "presence";
  readonly urgent = true;
  readonly filters;
  /** Three answers at once, then one every 10 s: a late Will sweep is one message per lamp. */
  private readonly answers = new RateLimiter(3, 0.1);
  private online_ = false;
  private held: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private connectedAt = 0;

  constructor(private readonly context: PresenceContext) {
    // No Local off: the Will is published in our client id's name, and that is what we watch for.
    this.filters = [{ filter: context.topic, noLocal: false }];
  }

  connected(_info: ConnectInfo): void {
    this.online_ = false;
    this.connectedAt = Date.now();
    clearTimeout(this.held);
    clearTimeout(this.pending);
    this.pending = undefined;
  }

  online(): void {
    this.online_ = true;
    this.say(ONLINE, "presence");
  }

  message(_topic: string, payload: Buffer): void {
    // Whatever its retain flag: brokers differ in how they flag a retained message published while we
    // are subscribed, and a replayed `0` from before this connection costs one more `1` at most.
    if (payload.toString() !== OFFLINE) return;
    // Before our `1` (a kept session's subscriptions are live from the CONNACK on): the `1` is coming.
    // No sign of a twin either way: our own Will, queued by a dropped link, comes just as a twin's does
    // (features/info.ts tells a twin).
    if (!this.online_) return;
    if (this.pending) return;
    // A `0` as the connection begins is from before it: the Will of our last connection (a kill -9, a
    // dropped link) queued in the kept session, or the retained `0` the renewed subscription replays.
    // Worth a `1`, not a warning on every restart.
    const fromBefore = Date.now() - this.connectedAt < FROM_BEFORE_MS;
    // A moment first: a broker that is shutting down publishes our Will to us too, just before it closes
    // the connection; that is no Will to answer. Still well within CONTRACT section 13's 2 s.
    this.pending = setTimeout(() => {
      this.pending = undefined;
      if (!this.online_ || !this.context.mqtt.connected) return;
      this.answer(fromBefore);
    }, ANSWER_AFTER_MS);
  }

  private answer(fromBefore: boolean): void {
    if (!this.answers.take()) {
      this.logger.debug("presence 0 again; answering later");
      this.held ??= setTimeout(() => {
        this.held = undefined;
        if (this.online_) this.say(ONLINE, "presence (late)");
      }, 10_000);
      return;
    }
    if (fromBefore)
      this.logger.debug(
        { topic: this.context.topic },
        "a presence 0 from before this connection came as it began; saying 1 again",
      );
    else
      this.logger.warn(
        { topic: this.context.topic },
        "the broker published presence 0 while this lamp is connected (a late Will from a cluster node, or a takeover); saying 1 again",
      );
    this.say(ONLINE, "presence");
  }

  /** Publishes `0` retained, stamped with the time, and waits for the broker to acknowledge it, bounded. */
  async stop(timeoutMs = 2000): Promise<void> {
    this.online_ = false;
    clearTimeout(this.held);
    clearTimeout(this.pending);
    const { mqtt, topic } = this.context;
    if (!mqtt.connected) return;
    // When it went offline, for `lampctl` to show beside the stale state (the Will cannot know).
    const acknowledged = mqtt.publish(topic, OFFLINE, {
      qos: 1,
      retain: true,
      userProperties: { since: new Date().toISOString() },
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const result = await Promise.race([acknowledged, timeout]);
      if (result === "timeout") this.logger.warn("the broker did not acknowledge presence 0 in time");
    } catch (error) {
      this.logger.warn({ cause: describeMqttError(error) }, "could not publish presence 0");
    } finally {
      clearTimeout(timer);
    }
  }

  private get logger(): Logger {
    return this.context.logger;
  }

  private say(value: string, what: string): void {
    const { mqtt, topic } = this.context;
    if (!mqtt.connected) return;
    mqtt.publish(topic, value, { qos: 1, retain: true }).catch((error: unknown) => {
      // A call cut short by a lost connection is not a refusal; the next connect says it again.
      if (!mqtt.connected) return;
      this.logger.error(
        { topic, cause: describeMqttError(error) },
        `the broker refused to let us publish the ${what} (check its ACL for this client)`,
      );
    });
  }
}

import type { IPublishPacket } from "mqtt";
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
  /**
   * Told when a `0` came right after this lamp said `1`: the Will of another connection with our client
   * id, which our CONNECT just took over (two Pis given one LAMP_ID).
   */
  readonly onRival?: () => void;
}

/** A `0` this soon after our `1` is the Will of the connection our CONNECT took over. */
const RIVAL_WINDOW_MS = 2000;

/**
 * `state/<id>`: the Will `0` is set in CONNECT (mqtt/connection.ts); this says `1` once the lamp listens,
 * and `0` itself before a clean stop (a clean DISCONNECT fires no Will). It also keeps `1` true: a
 * cluster may publish the Will of a dead node's client late, after the lamp reconnected elsewhere (Aedes
 * sweeps them heartbeats later: moscajs/aedes#756), or a takeover may; a live `0` we did not send is
 * answered with `1`, rate-limited so two agents given one id cannot turn it into a storm.
 */
export class Presence implements Feature {
  readonly name = "presence";
  readonly filters;
  /** Three answers at once, then one every 10 s: a late Will sweep is one message per lamp. */
  private readonly answers = new RateLimiter(3, 0.1);
  private online_ = false;
  private held: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private onlineAt = 0;
  private connectedAt = 0;
  /** A live `0` came between our CONNACK and our `1`: see message(). */
  private rivalBeforeOnline = false;

  constructor(private readonly context: PresenceContext) {
    // No Local off: the Will is published in our client id's name, and that is what we watch for.
    this.filters = [{ filter: context.topic, noLocal: false }];
  }

  connected(_info: ConnectInfo): void {
    this.online_ = false;
    this.connectedAt = Date.now();
    this.rivalBeforeOnline = false;
    clearTimeout(this.held);
    clearTimeout(this.pending);
    this.pending = undefined;
  }

  online(): void {
    this.online_ = true;
    this.onlineAt = Date.now();
    this.say(ONLINE, "presence");
    if (this.rivalBeforeOnline && this.context.mqtt.connected) this.context.onRival?.();
    this.rivalBeforeOnline = false;
  }

  message(_topic: string, payload: Buffer, packet: IPublishPacket): void {
    // Whatever its retain flag: brokers differ in how they flag a retained message published while we
    // are subscribed, and a replayed `0` from before this connection costs one more `1` at most.
    if (payload.toString() !== OFFLINE) return;
    if (!this.online_) {
      // A kept session's subscriptions are live from the CONNACK on, so the Will of the connection our
      // CONNECT took over (Aedes publishes it) can come before our `1`: no answer needed, the `1` is
      // coming, but it is the same sign of a twin as one just after it (missed, a twin on Aedes took
      // the session back within a second instead of waiting).
      if (!packet.retain && Date.now() - this.connectedAt < RIVAL_WINDOW_MS) this.rivalBeforeOnline = true;
      return;
    }
    if (this.pending) return;
    // Live, not the replay of a retained `0` at (re)subscribe (a broker's shutdown Will, say).
    const early = !packet.retain && Date.now() - this.onlineAt < RIVAL_WINDOW_MS;
    // A `0` as the connection begins is from before it: the Will of our last connection (a kill -9, a
    // dropped link) queued in the kept session, or the retained `0` the renewed subscription replays.
    // Worth a `1`, not a warning on every restart.
    const fromBefore = Date.now() - this.connectedAt < RIVAL_WINDOW_MS;
    // A moment first: a broker that is shutting down publishes our Will to us too, just before it closes
    // the connection; that is no Will to answer. Still well within CONTRACT section 13's 2 s.
    this.pending = setTimeout(() => {
      this.pending = undefined;
      if (!this.online_ || !this.context.mqtt.connected) return;
      if (early) this.context.onRival?.();
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

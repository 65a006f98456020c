import type { IPublishPacket } from "mqtt";
import type { Logger } from "../log.js";
import { type Backoff, ReconnectBackoff } from "./backoff.js";
import { describeMqttError } from "./errors.js";

/** Whoever wants the messages on a topic filter. */
export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void;

/** The part of the connection the router needs. */
export interface Subscriber {
  readonly connected: boolean;
  subscribe(filter: string, options?: { readonly noLocal?: boolean; readonly qos?: 0 | 1 }): Promise<void>;
  unsubscribe(filter: string): Promise<void>;
}

export interface RouterOptions {
  /** A refused subscription is tried again after this, doubling (with jitter) up to the maximum. */
  readonly retry?: Backoff;
  /**
   * A topic the lamp may read but does not subscribe to, asked for at QoS 1 to learn whether the broker
   * grants QoS 1 again (see TopicRouter); without one, the filters themselves are asked.
   */
  readonly probe?: string;
}

const RETRY: Backoff = { initialMs: 500, maxMs: 15_000 };

/**
 * MQTT's topic matching (MQTT 3.1.1 section 4.7) of a filter's levels against a topic's: `+` is one
 * level, a final `#` any number, even none.
 */
function levelsMatch(want: readonly string[], have: readonly string[]): boolean {
  // Topics starting with $ are the broker's; a wildcard at the first level never matches them.
  if (have[0]?.startsWith("$") && (want[0] === "+" || want[0] === "#")) return false;
  for (let i = 0; i < want.length; i++) {
    const level = want[i];
    if (level === "#") return i === want.length - 1;
    if (i >= have.length) return false;
    if (level !== "+" && level !== have[i]) return false;
  }
  return want.length === have.length;
}

interface Route {
  readonly filter: string;
  /** The filter's levels when it has a wildcard; undefined when only the exact topic matches. */
  readonly levels: readonly string[] | undefined;
  readonly handler: MessageHandler;
  /** See SubscribeOptions in connection.ts: false only where the broker publishes in our name. */
  readonly noLocal: boolean;
}

/**
 * The one MQTT message path. Features add the filters they want; the router subscribes to every one of
 * them at QoS 1 on every connect, retries a refused subscription until it is granted, and hands each
 * message to every handler whose filter matches it, once, however many of its filters match. It knows
 * nothing of what the topics mean.
 *
 * A lamp must never stay deaf. A NATS cluster with a node down refuses a QoS 1 SUBSCRIBE that needs a new
 * JetStream consumer (after 4 s, again and again, for as long as the node is down: docs/fleet.md) and
 * grants a QoS 0 one at once. So when QoS 1 is refused the filter is subscribed at QoS 0 meanwhile, which
 * hears every live message, and QoS 1 (which also keeps what is sent while the lamp is away) is asked for
 * again with backoff until granted.
 *
 * Asking again must not cost the hearing. NATS hands the new SUBSCRIBE the filter's QoS 0 subscription,
 * marks it QoS 1 (so it passes on no QoS 1 message) while it waits the 4 s for a consumer, and on the
 * refusal removes it: the lamp is deaf from the first refused retry until one is granted. So the retries
 * go to a probe topic the lamp is not subscribed to; only once the probe is granted (the cluster makes
 * consumers again) are the filters asked, one at a time, and a filter refused even then is at once
 * subscribed at QoS 0 again. Where the probe cannot be read at all (an ACL), the filters are asked
 * themselves, and each is subscribed at QoS 0 again after every refusal.
 */
export class TopicRouter {
  private readonly routes: Route[] = [];
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private readonly retry: Backoff;
  private readonly probe: string | undefined;
  /** Bumped on every connect: a retry or a grant from an earlier connection is stale. */
  private generation = 0;
  /** Filters heard at QoS 0 while QoS 1 is refused, with how many times QoS 1 was asked for. */
  private readonly meanwhile = new Map<string, number>();
  private upgradeTimer: NodeJS.Timeout | undefined;
  private upgrading = false;
  private upgradeBackoff: ReconnectBackoff;
  /** Whether this connection's broker lets us read the probe at all; undefined until it refuses once. */
  private probeReadable: boolean | undefined;

  constructor(
    private readonly subscriber: Subscriber,
    private readonly logger: Logger,
    { retry = RETRY, probe }: RouterOptions = {},
  ) {
    this.retry = retry;
    this.probe = probe;
    this.upgradeBackoff = new ReconnectBackoff(retry);
  }

  add(
    filter: string,
    handler: MessageHandler,
    { noLocal = true }: { readonly noLocal?: boolean } = {},
  ): void {
    const wild = filter.includes("+") || filter.includes("#");
    this.routes.push({ filter, levels: wild ? filter.split("/") : undefined, handler, noLocal });
  }

  /** Every distinct filter, in the order they were added. */
  get filters(): string[] {
    return [...new Set(this.routes.map((route) => route.filter))];
  }

  /**
   * Subscribes to every filter; resolves once each one is granted, however many tries that takes, and
   * never rejects. A connection lost meanwhile leaves it pending: the next connect starts afresh. On a
   * kept session a filter the last connection heard at QoS 0 is asked for at QoS 0 again, not 1: asking
   * for QoS 1 would cost its hearing while the broker refuses (see the class), and the probe asks first.
   */
  subscribeAll({ sessionPresent = false }: { readonly sessionPresent?: boolean } = {}): Promise<void> {
    const heldAtQos0 = sessionPresent ? new Map(this.meanwhile) : new Map<string, number>();
    this.cancelRetries();
    const generation = ++this.generation;
    return Promise.all(
      this.filters.map((filter) => {
        const tries = heldAtQos0.get(filter);
        return tries === undefined
          ? this.subscribeOne(filter, generation)
          : this.hearMeanwhile(filter, tries, generation);
      }),
    ).then(() => undefined);
  }

  /**
   * Hands the message to every handler with a matching filter; false when none wanted it. Runs for
   * every message, so it splits the topic once, not once per filter, and only when a wildcard needs it.
   */
  dispatch(topic: string, payload: Buffer, packet: IPublishPacket): boolean {
    let levels: string[] | undefined;
    let called: MessageHandler[] | undefined;
    for (const { filter, levels: want, handler } of this.routes) {
      if (called?.includes(handler)) continue;
      if (want === undefined) {
        if (filter !== topic) continue;
      } else {
        levels ??= topic.split("/");
        if (!levelsMatch(want, levels)) continue;
      }
      called ??= [];
      called.push(handler);
      handler(topic, payload, packet);
    }
    return called !== undefined;
  }

  stop(): void {
    this.generation++;
    this.cancelRetries();
  }

  /** Resolves once the filter is heard: granted at QoS 1, or at QoS 0 while QoS 1 is refused. */
  private subscribeOne(filter: string, generation: number): Promise<void> {
    const backoff = new ReconnectBackoff(this.retry);
    const noLocal = this.noLocal(filter);
    // A call cut short by a lost connection is not a refusal; the next connect does it again.
    const stale = () => this.stale(generation);
    return new Promise<void>((resolve) => {
      const attempt = (tries: number): void => {
        if (stale()) return;
        this.subscriber.subscribe(filter, { noLocal, qos: 1 }).then(
          () => {
            if (generation !== this.generation) return;
            if (tries > 0)
              this.logger.info({ topic: filter, tries: tries + 1 }, "subscribed after a refusal");
            resolve();
          },
          (error: unknown) => {
            if (stale()) return;
            const inMs = backoff.next();
            this.logger[tries === 0 ? "error" : "debug"](
              { topic: filter, cause: describeMqttError(error), inMs },
              "the broker refused to let us subscribe (check its ACL for this client; a cluster may refuse while a node is down); trying again",
            );
            this.subscriber.subscribe(filter, { noLocal, qos: 0 }).then(
              () => {
                if (stale()) return;
                this.logger.warn(
                  { topic: filter },
                  "subscribed at QoS 0 until QoS 1 is granted: live messages are heard, but none is kept for this lamp while it is away",
                );
                resolve();
                this.meanwhile.set(filter, tries + 1);
                this.scheduleUpgrade(generation);
              },
              () => {
                if (stale()) return;
                const timer = setTimeout(() => {
                  this.retries.delete(filter);
                  attempt(tries + 1);
                }, inMs);
                this.retries.set(filter, timer);
              },
            );
          },
        );
      };
      attempt(0);
    });
  }

  /** Subscribes at QoS 0 a filter whose QoS 1 was refused before; falls back to the whole path. */
  private hearMeanwhile(filter: string, tries: number, generation: number): Promise<void> {
    return this.subscriber.subscribe(filter, { noLocal: this.noLocal(filter), qos: 0 }).then(
      () => {
        // Cut short by a lost connection: pending, as subscribeOne leaves it.
        if (this.stale(generation)) return new Promise<void>(() => undefined);
        this.logger.debug({ topic: filter }, "kept session: at QoS 0 again until QoS 1 is granted");
        this.meanwhile.set(filter, tries);
        this.scheduleUpgrade(generation);
      },
      () => this.subscribeOne(filter, generation),
    );
  }

  private scheduleUpgrade(generation: number): void {
    if (this.upgradeTimer || this.upgrading || this.meanwhile.size === 0) return;
    this.upgradeTimer = setTimeout(() => {
      this.upgradeTimer = undefined;
      void this.upgrade(generation);
    }, this.upgradeBackoff.next());
  }

  /**
   * One round of asking for QoS 1 again: the probe first, then (once it is granted, or when there is no
   * probe to ask) each filter heard at QoS 0, one at a time, until one is refused.
   */
  private async upgrade(generation: number): Promise<void> {
    if (this.stale(generation)) return;
    this.upgrading = true;
    try {
      if (!(await this.probeGranted(generation))) return;
      for (const [filter, tries] of this.meanwhile) {
        if (this.stale(generation)) return;
        const noLocal = this.noLocal(filter);
        try {
          await this.subscriber.subscribe(filter, { noLocal, qos: 1 });
        } catch (error) {
          if (this.stale(generation)) return;
          this.meanwhile.set(filter, tries + 1);
          this.logger.debug(
            { topic: filter, cause: describeMqttError(error) },
            "the broker refused QoS 1 again; hearing at QoS 0 again meanwhile",
          );
          // The refusal may have taken the QoS 0 subscription with it (NATS does): ask for it again.
          await this.subscriber.subscribe(filter, { noLocal, qos: 0 }).catch((cause: unknown) => {
            if (!this.stale(generation))
              this.logger.error(
                { topic: filter, cause: describeMqttError(cause) },
                "the broker refused QoS 0 too: this filter is not heard until the next try",
              );
          });
          return;
        }
        if (this.stale(generation)) return;
        this.meanwhile.delete(filter);
        this.logger.info({ topic: filter, tries: tries + 1 }, "subscribed after a refusal");
      }
      this.upgradeBackoff.reset();
    } finally {
      if (generation === this.generation) {
        this.upgrading = false;
        this.scheduleUpgrade(generation);
      }
    }
  }

  /**
   * Whether the broker grants QoS 1 on the probe now (its subscription ended at once), or true when there
   * is no probe to ask. The first refusal is told apart from an ACL's by asking for QoS 0: refused too,
   * the probe is no use on this connection.
   */
  private async probeGranted(generation: number): Promise<boolean> {
    const probe = this.probe;
    const subscribed = this.routes.some((route) => route.filter === probe);
    if (probe === undefined || subscribed || this.probeReadable === false) return true;
    const end = () => {
      this.subscriber.unsubscribe(probe).catch(() => undefined);
    };
    try {
      await this.subscriber.subscribe(probe, { qos: 1 });
    } catch (error) {
      if (this.stale(generation)) return false;
      this.logger.debug({ topic: probe, cause: describeMqttError(error) }, "QoS 1 still refused");
      if (this.probeReadable) return false;
      try {
        await this.subscriber.subscribe(probe, { qos: 0 });
        if (!this.stale(generation)) end();
        this.probeReadable = true;
        return false;
      } catch {
        if (this.stale(generation)) return false;
        this.probeReadable = false;
        this.logger.warn(
          { topic: probe },
          "the broker refuses us the probe topic too (check its ACL): QoS 1 is asked for on each filter itself, and a filter may miss what comes while the broker answers",
        );
        return true;
      }
    }
    if (!this.stale(generation)) end();
    this.probeReadable = true;
    return true;
  }

  private noLocal(filter: string): boolean {
    return this.routes.every((route) => route.filter !== filter || route.noLocal);
  }

  private stale(generation: number): boolean {
    return generation !== this.generation || !this.subscriber.connected;
  }

  private cancelRetries(): void {
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = undefined;
    this.upgrading = false;
    this.meanwhile.clear();
    this.upgradeBackoff = new ReconnectBackoff(this.retry);
    this.probeReadable = undefined;
  }
}

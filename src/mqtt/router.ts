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
}

/** A refused subscription is tried again after this, doubling (with jitter) up to the maximum. */
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
 * hears every live message, and QoS 1 (which also keeps what is sent while the lamp is away) is retried
 * with backoff until granted.
 */
export class TopicRouter {
  private readonly routes: Route[] = [];
  private readonly retries = new Map<string, NodeJS.Timeout>();
  /** Bumped on every connect: a retry or a grant from an earlier connection is stale. */
  private generation = 0;

  constructor(
    private readonly subscriber: Subscriber,
    private readonly logger: Logger,
    private readonly retry: Backoff = RETRY,
  ) {}

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
   * never rejects. A connection lost meanwhile leaves it pending: the next connect starts afresh.
   */
  subscribeAll(): Promise<void> {
    this.cancelRetries();
    const generation = ++this.generation;
    return Promise.all(this.filters.map((filter) => this.subscribeOne(filter, generation))).then(
      () => undefined,
    );
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
    const noLocal = this.routes.every((route) => route.filter !== filter || route.noLocal);
    // A call cut short by a lost connection is not a refusal; the next connect does it again.
    const stale = () => generation !== this.generation || !this.subscriber.connected;
    /** Subscribed at QoS 0 while QoS 1 is refused. */
    let meanwhile = false;
    return new Promise<void>((resolve) => {
      const retry = (tries: number, inMs: number): void => {
        const timer = setTimeout(() => {
          this.retries.delete(filter);
          attempt(tries + 1);
        }, inMs);
        this.retries.set(filter, timer);
      };
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
            if (meanwhile) return retry(tries, inMs);
            this.subscriber.subscribe(filter, { noLocal, qos: 0 }).then(
              () => {
                if (stale()) return;
                meanwhile = true;
                this.logger.warn(
                  { topic: filter },
                  "subscribed at QoS 0 until QoS 1 is granted: live messages are heard, but none is kept for this lamp while it is away",
                );
                resolve();
                retry(tries, inMs);
              },
              () => {
                if (!stale()) retry(tries, inMs);
              },
            );
          },
        );
      };
      attempt(0);
    });
  }

  private cancelRetries(): void {
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
  }
}

import type { IPublishPacket } from "mqtt";
import type { Logger } from "../log.js";
import type { ConnectInfo, ConnectionEvents } from "../mqtt/connection.js";
import type { TopicRouter } from "../mqtt/router.js";
import type { Feature } from "./feature.js";

/**
 * Runs the features on one connection. On every connect: each feature's `connected`, then the router
 * subscribes to every filter, and once the lamp listens (the broker kept its session, or every
 * subscription is granted) each feature's `online`, presence first, so `1` means a command will be
 * heard (CONTRACT section 2); the urgent ones (presence, the state) in that turn, the others in the
 * next. On a clean stop: each feature's `stop` in reverse order, each on its own.
 */
export class FeatureHouse implements ConnectionEvents {
  /** Bumped on every connect: an `online` waiting for the grants of an older connection is dropped. */
  private generation = 0;

  constructor(
    private readonly features: readonly Feature[],
    private readonly router: TopicRouter,
    private readonly logger: Logger,
  ) {
    for (const feature of features) {
      const handler = feature.message?.bind(feature);
      for (const { filter, noLocal } of feature.filters) {
        if (handler) router.add(filter, handler, { noLocal: noLocal ?? true });
      }
    }
  }

  onConnect(info: ConnectInfo): void {
    const generation = ++this.generation;
    for (const feature of this.features) feature.connected?.(info);
    const granted = this.router.subscribeAll({ sessionPresent: info.sessionPresent });
    const online = () => {
      if (generation !== this.generation) return;
      for (const feature of this.features) if (feature.urgent) feature.online?.();
      // MQTT.js writes what was published in this turn at its end (it corks the socket until the next
      // tick); the rest is built after that write.
      setImmediate(() => {
        if (generation !== this.generation) return;
        for (const feature of this.features) if (!feature.urgent) feature.online?.();
      });
    };
    // A kept session already holds every subscription: the lamp listens from the CONNACK on, and says so
    // now, before any command queued in the session is read (its first state is the one it had).
    if (info.sessionPresent) online();
    else void granted.then(online);
  }

  onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (!this.router.dispatch(topic, payload, packet))
      this.logger.trace({ topic }, "a message nobody asked for");
  }

  async stop(): Promise<void> {
    this.generation++;
    this.router.stop();
    for (const feature of [...this.features].reverse()) {
      try {
        await feature.stop?.();
      } catch (error) {
        this.logger.error({ feature: feature.name, err: error }, "error while stopping");
      }
    }
  }
}

import type { IPublishPacket } from "mqtt";
import type { Logger } from "../log.js";
import { protocolName } from "../mqtt/client-options.js";
import { describeMqttError } from "../mqtt/errors.js";
import { type InfoMessage, parseInfo } from "../protocol/payloads.js";
import type { ConnectInfo, Feature, MqttPort } from "./feature.js";

/**
 * How long online() waits, on a reconnect, for the broker to replay the info it retained before
 * publishing ours. Ours would otherwise replace it first: Aedes on Redis replays tens of ms after the
 * SUBACK, and the twin sign (readOther()) then only ever read our own info back.
 */
const REPLAY_WAIT_MS = 500;

export interface InfoContext {
  readonly topic: string;
  readonly mqtt: MqttPort;
  readonly logger: Logger;
  /** What the lamp is, fixed for the life of the process. */
  readonly lamp: Omit<InfoMessage, "broker" | "mqtt" | "problem" | "instance">;
  /** The client id: named in the problem when another client takes it over. */
  readonly clientId: string;
  /**
   * Told when another process published this lamp's info since this one did: another agent runs with
   * this LAMP_ID (see message()).
   */
  readonly onRival?: () => void;
}

/**
 * `<base>/info` (CONTRACT section 14): what a lamp is, retained, so a fresh subscriber reads the whole
 * fleet at once, as zigbee2mqtt's `bridge/info`. Published once the lamp listens after every connect:
 * the broker node and the protocol, part of it, may change with each one.
 */
export class Info implements Feature {
  readonly name = "info";
  readonly filters;
  /**
   * Ours alone: see InfoMessage.instance. Math.random, not node:crypto: it only has to differ from one
   * other agent's, and crypto would start OpenSSL in every agent (2.6 MiB; docs/performance.md).
   */
  readonly instance = Math.floor(Math.random() * 2 ** 48)
    .toString(16)
    .padStart(12, "0");
  private link: Pick<InfoMessage, "broker" | "mqtt" | "problem"> | undefined;
  /** The broker has acknowledged an info of ours: from then on, a retained one not ours came later. */
  private announced = false;
  /** An info came on this connection: what the broker retained has been read, ours may replace it. */
  private replayed = false;
  /** online() came before the replay: ours goes out when it comes, or after REPLAY_WAIT_MS. */
  private waiting: NodeJS.Timeout | undefined;

  constructor(private readonly context: InfoContext) {
    // Read back on every connect (the router subscribes each time, and the broker replays what it
    // retained). No Local off: a twin publishes with our client id.
    this.filters = [{ filter: context.topic, noLocal: false }];
  }

  connected(info: ConnectInfo): void {
    this.replayed = false;
    clearTimeout(this.waiting);
    this.waiting = undefined;
    this.link = {
      broker: info.node,
      mqtt: protocolName(info.protocol),
      // Said where the fleet and `--check` read it, not only in this Pi's log.
      ...(info.takenOver && {
        problem: `another client connected with this lamp's client id (${this.context.clientId}) and took its session over: two Pis given one LAMP_ID? Give each its own LAMP_ID (or MQTT_CLIENT_ID)`,
      }),
    };
  }

  online(): void {
    // Before ours was ever acknowledged a replay is no sign (see readOther()): nothing to wait for.
    if (this.replayed || !this.announced) this.announce();
    else this.waiting = setTimeout(() => this.announce(), REPLAY_WAIT_MS);
  }

  stop(): void {
    clearTimeout(this.waiting);
    this.waiting = undefined;
  }

  private announce(): void {
    clearTimeout(this.waiting);
    this.waiting = undefined;
    const { mqtt, topic, logger, lamp } = this.context;
    if (!this.link || !mqtt.connected) return;
    const payload = JSON.stringify({ ...lamp, ...this.link, instance: this.instance } satisfies InfoMessage);
    // Every time, not only when it changed: a broker without persistence forgets what it retained.
    mqtt.publish(topic, payload, { qos: 1, retain: true }).then(
      () => {
        this.announced = true;
      },
      (error: unknown) => {
        if (mqtt.connected)
          logger.warn({ topic, cause: describeMqttError(error) }, "could not publish the info");
      },
    );
  }

  /** The first one on a connection is what the broker retained: read before ours replaces it. */
  message(_topic: string, payload: Buffer, packet: IPublishPacket): void {
    this.replayed = true;
    this.readOther(payload, packet);
    if (this.waiting) this.announce();
  }

  /**
   * Another agent with our LAMP_ID shows itself here whatever the broker does on a takeover (a Will, a
   * DISCONNECT reason, nothing): each of the two publishes its info after every connect, so the one
   * that connects next reads the other's, retained, when it subscribes. Only once ours was acknowledged:
   * on the first connect what the broker retained is our own previous run's. A live one (the two
   * connected at once, on two nodes of a cluster for a moment) is the other process there and then.
   */
  private readOther(payload: Buffer, packet: IPublishPacket): void {
    const other = parseInfo(payload.toString())?.instance;
    if (other === undefined || other === this.instance) return;
    if (packet.retain && !this.announced) return;
    this.context.logger.debug(
      { instance: other, retained: packet.retain },
      "another process published this lamp's info",
    );
    this.context.onRival?.();
  }
}

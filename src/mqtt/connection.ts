import { readFileSync } from "node:fs";
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import type { Config } from "../config.js";
import type { Logger } from "../log.js";

export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 60_000 };

/** A connection shorter than this does not reset the backoff: it is a flap, not a recovery. */
const STABLE_MS = 10_000;
/** MQTT 5 asks the broker to keep our session (and queue QoS 1 commands) this long while we are away. */
const SESSION_EXPIRY_S = 3600;
/** Reason code 142, "Session taken over": another client connected with our client id. */
const SESSION_TAKEN_OVER = 142;

export interface ConnectionEvents {
  /** Called after every CONNACK that accepted us; `protocol` is 5 or 4 (3.1.1). */
  onConnect(protocol: 4 | 5): void;
  onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void;
}

export interface PublishOptions {
  readonly qos: 0 | 1;
  readonly retain: boolean;
}

/** The refusal reason of an MQTT error, readable: "Not authorized (135)". */
export function describeMqttError(error: unknown): string {
  const e = error as { message?: string; code?: unknown };
  return typeof e.code === "number" ? `${e.message} (reason code ${e.code})` : String(e.message ?? error);
}

/**
 * One MQTT session with the broker, kept for ever: Will set in CONNECT, MQTT 5 with a fall back to
 * 3.1.1, reconnects with exponential backoff (MQTT.js's own reconnect is a fixed period), and a loud
 * log line when another client keeps taking our client id (MQTT.js issue #1585).
 */
export class MqttConnection {
  private client: MqttClient | undefined;
  private protocol: 4 | 5;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectedAt = 0;
  private takenOver = false;
  private stopping = false;
  private lastError = "";
  /** Set when the broker refused MQTT 5: retry at once in 3.1.1 rather than after a backoff. */
  private downgraded = false;

  constructor(
    private readonly config: Config,
    private readonly events: ConnectionEvents,
    private readonly logger: Logger,
    private readonly backoff: Backoff = DEFAULT_BACKOFF,
  ) {
    this.protocol = config.mqtt.protocol;
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  get protocolVersion(): 4 | 5 {
    return this.protocol;
  }

  start(): void {
    const options = this.clientOptions();
    this.logger.info(
      { url: this.config.mqtt.url, clientId: this.config.mqtt.clientId },
      "connecting to the broker",
    );
    const client = mqtt.connect(this.config.mqtt.url, options);
    this.client = client;
    client.on("connect", (connack) => {
      // MQTT.js leaves Nagle's algorithm on (it opens the socket without noDelay). A state publish
      // written while our PUBACK for the command is still unacknowledged then waits for the broker's
      // delayed ACK: 40 ms stalls on loopback, and a reconnect backlog (sent 20 at a time, each batch
      // waiting for our PUBACKs) crawls. Every packet we send is small and wanted now. TLS sockets have
      // setNoDelay too; the WebSocket transport sets it itself (ws), hence the optional call.
      (client.stream as { setNoDelay?: (noDelay: boolean) => unknown }).setNoDelay?.(true);
      this.connectedAt = Date.now();
      this.lastError = "";
      this.logger.info(
        { protocol: this.protocol === 5 ? "5" : "3.1.1", sessionPresent: connack.sessionPresent },
        "connected to the broker",
      );
      this.events.onConnect(this.protocol);
    });
    client.on("message", (topic, payload, packet) => this.events.onMessage(topic, payload, packet));
    client.on("disconnect", (packet) => {
      if (packet.reasonCode === SESSION_TAKEN_OVER) {
        this.takenOver = true;
        this.logger.error(
          { clientId: this.config.mqtt.clientId },
          "another client connected with this client id and took the session over; give every lamp its own LAMP_ID or MQTT_CLIENT_ID",
        );
      } else {
        this.logger.warn({ reasonCode: packet.reasonCode }, "the broker disconnected us");
      }
    });
    client.on("error", (error) => this.onError(error));
    client.on("close", () => this.onClose());
  }

  /** Publishes; resolves once the broker acknowledged (QoS 1) or the packet was written (QoS 0). */
  publish(topic: string, payload: string, options: PublishOptions): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, options, (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * Subscribes at QoS 1; on MQTT 5 with No Local (our own publishes never come back) and Retain As
   * Published (so a retained command is recognisable even when it arrives live). Rejects when the broker
   * refuses (an ACL, say).
   */
  subscribe(topic: string): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error("not connected"));
    const options = this.protocol === 5 ? { qos: 1 as const, nl: true, rap: true } : { qos: 1 as const };
    return new Promise((resolve, reject) => {
      client.subscribe(topic, options, (error, granted) => {
        const refused = granted?.find((g) => g.qos >= 0x80);
        if (error || refused) reject(error ?? new Error(`refused with reason code ${refused?.qos}`));
        else resolve();
      });
    });
  }

  /** Clean DISCONNECT (which does not fire the Will), bounded so a dead link cannot hold up exit. */
  async stop(timeoutMs = 2000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        client.end(true);
        resolve();
      }, timeoutMs);
      client.end(!client.connected, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private clientOptions(): IClientOptions {
    const { mqtt: m, topics } = this.config;
    const options: IClientOptions = {
      clientId: m.clientId,
      protocolVersion: this.protocol,
      clean: false,
      ...(this.protocol === 5 && { properties: { sessionExpiryInterval: SESSION_EXPIRY_S } }),
      keepalive: m.keepalive,
      // We reconnect ourselves, with backoff; and subscribe ourselves, so presence goes first.
      reconnectPeriod: 0,
      resubscribe: false,
      connectTimeout: 10_000,
      // Nothing piles up while offline: state is republished whole on reconnect instead.
      queueQoSZero: false,
      will: { topic: topics.presence, payload: Buffer.from("0"), qos: 1, retain: true },
    };
    if (m.username !== undefined) options.username = m.username;
    if (m.password !== undefined) options.password = m.password;
    if (m.caFile) options.ca = readFileSync(m.caFile);
    if (m.certFile) options.cert = readFileSync(m.certFile);
    if (m.keyFile) options.key = readFileSync(m.keyFile);
    return options;
  }

  private onError(error: Error & { code?: unknown }): void {
    // A 3.1.1-only broker answers an MQTT 5 CONNECT with "unacceptable protocol version" (1, or 132 in
    // MQTT 5 terms): speak 3.1.1 from then on. The application-level echo guard covers No Local.
    if (this.protocol === 5 && (error.code === 1 || error.code === 132)) {
      this.protocol = 4;
      const options = this.client?.options;
      if (options) {
        options.protocolVersion = 4;
        delete options.properties;
      }
      this.attempt = 0;
      this.downgraded = true;
      this.logger.warn("the broker does not speak MQTT 5; using MQTT 3.1.1");
      return;
    }
    const message = describeMqttError(error);
    // One line per distinct cause, not one per retry.
    if (message !== this.lastError) this.logger.error({ cause: message }, "MQTT connection problem");
    this.lastError = message;
  }

  private onClose(): void {
    if (this.stopping) return;
    const lasted = this.connectedAt ? Date.now() - this.connectedAt : 0;
    if (this.connectedAt) {
      this.logger.warn("lost the broker connection; the lamp keeps working and will reconnect");
      if (lasted < STABLE_MS && !this.takenOver) {
        this.logger.warn(
          { clientId: this.config.mqtt.clientId, lastedMs: lasted },
          "the broker closed the connection right after connecting; is another client using this client id?",
        );
      }
    }
    if (lasted >= STABLE_MS) this.attempt = 0;
    this.connectedAt = 0;
    this.takenOver = false;
    const delay = this.downgraded
      ? 0
      : Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.attempt);
    this.downgraded = false;
    this.attempt++;
    // Jitter spreads a fleet's reconnects after a broker restart.
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.logger.debug({ inMs: jittered }, "reconnecting");
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (!this.stopping) this.client?.reconnect();
    }, jittered);
  }
}

import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import { type Config, redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { loadTlsMaterial } from "../tls-files.js";
import { type Backoff, ReconnectBackoff } from "./backoff.js";
import { baseClientOptions, errorContext, protocolName, refusesMqtt5, speak311 } from "./client-options.js";
import { describeMqttError, explainConnectionError, reasonText } from "./errors.js";
import { TakeoverDetector } from "./takeover.js";

export type { Backoff } from "./backoff.js";
export { describeMqttError };

/** A connection shorter than this does not reset the backoff: it is a flap, not a recovery. */
const STABLE_MS = 10_000;
/** MQTT 5 asks the broker to keep our session (and queue QoS 1 commands) this long while we are away. */
const SESSION_EXPIRY_S = 3600;
/**
 * The largest packet we accept. MQTT 5 tells the broker in CONNECT, and the broker then drops anything
 * bigger instead of making us buffer it (MQTT.js would hold a 256 MB publish in memory before our
 * 4 KiB command check ever saw it). Commands are at most 4 KiB; the rest is headroom for topics.
 */
const MAX_PACKET_BYTES = 64 * 1024;

/** What a CONNACK told us. */
export interface ConnectInfo {
  /** 5, or 4 for 3.1.1. */
  readonly protocol: 4 | 5;
  /** The broker kept our session, and with it our subscriptions and the commands queued meanwhile. */
  readonly sessionPresent: boolean;
  /** The node we are connected to, its password masked (a cluster has several). */
  readonly node: string;
}

export interface ConnectionEvents {
  /** Called after every CONNACK that accepted us. */
  onConnect(info: ConnectInfo): void;
  onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void;
}

export interface PublishOptions {
  readonly qos: 0 | 1;
  readonly retain: boolean;
  /** MQTT 5 user properties; dropped on 3.1.1, which has none. */
  readonly userProperties?: Readonly<Record<string, string>>;
}

export interface SubscribeOptions {
  /**
   * MQTT 5's No Local (default true): the broker never sends us what we published. Off for a topic where
   * the broker publishes in our name, the Will on the presence topic.
   */
  readonly noLocal?: boolean;
}

/**
 * One MQTT session with the broker, kept for ever: Will set in CONNECT, MQTT 5 with a fall back to
 * 3.1.1, reconnects with exponential backoff, and one clear log line when another client with our
 * client id keeps taking the session over (MQTT.js issue #1585), after which it backs off to the
 * longest delay so the two stop fighting.
 */
export class MqttConnection {
  private client: MqttClient | undefined;
  private protocol: 4 | 5;
  private readonly backoff: ReconnectBackoff;
  private readonly takeover: TakeoverDetector;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectedAt = 0;
  /** The reason code of the broker's DISCONNECT for the session that is closing, if it sent one. */
  private disconnectReason: number | undefined;
  private takeoverLogged = false;
  private stopping = false;
  private lastError = "";
  /** Set when the broker refused MQTT 5: retry at once in 3.1.1 rather than after a backoff. */
  private downgraded = false;

  constructor(
    private readonly config: Config,
    private readonly events: ConnectionEvents,
    private readonly logger: Logger,
    backoff: Backoff = config.mqtt.reconnect,
  ) {
    this.protocol = config.mqtt.protocol;
    this.backoff = new ReconnectBackoff(backoff);
    // The other client comes back within its longest delay (+20 % jitter); well past that, it is gone.
    this.takeover = new TakeoverDetector(STABLE_MS, 3 * backoff.maxMs);
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /**
   * What is waiting on the broker now: publishes awaiting its acknowledgement, packets queued while
   * offline, bytes not yet on the wire. All stay small however fast commands arrive (test/faults).
   */
  get pending(): { awaitingAck: number; queued: number; bufferedBytes: number } {
    const client = this.client;
    if (!client) return { awaitingAck: 0, queued: 0, bufferedBytes: 0 };
    return {
      awaitingAck: Object.keys(client.outgoing).length,
      queued: client.queue.length,
      bufferedBytes: (client.stream as { writableLength?: number }).writableLength ?? 0,
    };
  }

  start(): void {
    const options = this.clientOptions();
    this.logger.info(
      { url: redactUrl(this.config.mqtt.url), clientId: this.config.mqtt.clientId },
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
        { protocol: protocolName(this.protocol), sessionPresent: connack.sessionPresent },
        "connected to the broker",
      );
      this.events.onConnect({
        protocol: this.protocol,
        sessionPresent: connack.sessionPresent,
        node: redactUrl(this.config.mqtt.url),
      });
    });
    client.on("message", (topic, payload, packet) => this.events.onMessage(topic, payload, packet));
    client.on("disconnect", (packet) => {
      this.disconnectReason = packet.reasonCode ?? 0;
    });
    client.on("error", (error) => this.onError(error));
    client.on("close", () => this.onClose());
  }

  /** Publishes; resolves once the broker acknowledged (QoS 1) or the packet was written (QoS 0). */
  publish(topic: string, payload: string, options: PublishOptions): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error("not connected"));
    const { userProperties, ...rest } = options;
    const packet = this.protocol === 5 && userProperties ? { ...rest, properties: { userProperties } } : rest;
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, packet, (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * Subscribes at QoS 1; on MQTT 5 with No Local (our own publishes never come back) and without Retain
   * As Published, so the retain flag of a message means what it means on 3.1.1: replayed from the
   * broker's store at subscribe, not live. Rejects when the broker refuses (an ACL, say).
   */
  subscribe(topic: string, { noLocal = true }: SubscribeOptions = {}): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error("not connected"));
    const options = this.protocol === 5 ? { qos: 1 as const, nl: noLocal } : { qos: 1 as const };
    return new Promise((resolve, reject) => {
      client.subscribe(topic, options, (error, granted) => {
        // MQTT 3.1.1 has one failure code, 128; MQTT 5 says why (135: not authorized, by an ACL).
        // MQTT.js reports a refusal as an error carrying the SUBACK, or (older versions) in `granted`.
        const suback = (error as { packet?: { granted?: unknown[] } } | null)?.packet?.granted ?? [];
        const codes = [...suback, ...(granted ?? []).map((g) => g.qos)];
        const refused = codes.find((code): code is number => typeof code === "number" && code >= 0x80);
        if (refused !== undefined) reject(new Error(`refused: ${reasonText(refused)}`));
        else if (error) reject(error);
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
      ...baseClientOptions(this.config.mqtt, this.logger),
      clientId: m.clientId,
      protocolVersion: this.protocol,
      clean: false,
      ...(this.protocol === 5 && {
        properties: { sessionExpiryInterval: SESSION_EXPIRY_S, maximumPacketSize: MAX_PACKET_BYTES },
      }),
      keepalive: m.keepalive,
      // We reconnect ourselves, with backoff; and subscribe ourselves, so presence goes first.
      reconnectPeriod: 0,
      resubscribe: false,
      connectTimeout: 10_000,
      // Nothing piles up while offline: state is republished whole on reconnect instead.
      queueQoSZero: false,
      will: { topic: topics.presence, payload: Buffer.from("0"), qos: 1, retain: true },
    };
    return options;
  }

  private onError(error: Error & { code?: unknown }): void {
    // A 3.1.1-only broker answers an MQTT 5 CONNECT with "unacceptable protocol version" (1, or 132 in
    // MQTT 5 terms): speak 3.1.1 from then on. The application-level echo guard covers No Local.
    if (refusesMqtt5(error, this.protocol)) {
      this.protocol = 4;
      const options = this.client?.options;
      if (options) speak311(options);
      this.backoff.reset();
      this.downgraded = true;
      this.logger.warn("the broker does not speak MQTT 5; using MQTT 3.1.1");
      return;
    }
    this.report(error);
  }

  /** One line per distinct cause, not one per retry. */
  private report(error: unknown): void {
    const message = explainConnectionError(error, errorContext(this.config.mqtt, this.protocol));
    if (message !== this.lastError) this.logger.error({ cause: message }, "MQTT connection problem");
    this.lastError = message;
  }

  /**
   * Re-reads the TLS files first, so a renewed certificate is used without a restart; a pair that does
   * not fit (mid-renewal) is reported and retried later rather than thrown from inside MQTT.js.
   */
  private reconnect(): void {
    const client = this.client;
    if (this.stopping || !client) return;
    const { mqtt: m } = this.config;
    if (m.caFile || m.certFile) {
      try {
        // MQTT.js builds each new TLS stream from this same options object; the security tests (a fixed
        // CA file, a renewed client certificate) fail if that ever changes.
        Object.assign(client.options, loadTlsMaterial(m));
      } catch (error) {
        this.report(new Error(`cannot use the TLS files: ${(error as Error).message}`));
        this.scheduleReconnect(this.backoff.next());
        return;
      }
    }
    client.reconnect();
  }

  private onClose(): void {
    if (this.stopping) return;
    const lasted = this.connectedAt ? Date.now() - this.connectedAt : undefined;
    const reason = this.disconnectReason;
    this.connectedAt = 0;
    this.disconnectReason = undefined;
    if (lasted === undefined) {
      this.takeover.failedAttempt();
      this.scheduleReconnect(this.downgraded ? 0 : this.backoff.next());
    } else if (this.takeover.closed(lasted, reason)) {
      const delay = this.backoff.longest();
      this.reportTakeover(delay);
      this.scheduleReconnect(delay);
    } else {
      this.logger.warn(
        reason === undefined ? {} : { reason: reasonText(reason) },
        "lost the broker connection; the lamp keeps working and will reconnect",
      );
      if (lasted >= STABLE_MS) this.backoff.reset();
      this.scheduleReconnect(this.backoff.next());
    }
    this.downgraded = false;
  }

  /** Once: a second lamp with our client id is a setup mistake, not news every minute. */
  private reportTakeover(delayMs: number): void {
    const { clientId } = this.config.mqtt;
    if (this.takeoverLogged) {
      this.logger.debug({ clientId, inMs: delayMs }, "taken over again");
      return;
    }
    this.takeoverLogged = true;
    this.logger.error(
      { clientId, inMs: delayMs },
      `another client connected with this client id (${clientId}) and took the session over; give every lamp its own LAMP_ID (or MQTT_CLIENT_ID). Until then this one reconnects only at its longest delay, so the two stop fighting`,
    );
  }

  private scheduleReconnect(delayMs: number): void {
    this.logger.debug({ inMs: delayMs }, "reconnecting");
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.reconnect(), delayMs);
  }
}

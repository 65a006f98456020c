import mqtt, {
  type IClientOptions,
  type IClientPublishOptions,
  type IPublishPacket,
  type MqttClient,
} from "mqtt";
import { type Config, redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { type Backoff, ReconnectBackoff } from "./backoff.js";
import { baseClientOptions, errorContext, protocolName, refusesMqtt5 } from "./client-options.js";
import { describeMqttError, explainConnectionError, reasonText } from "./errors.js";
import { SESSION_TAKEN_OVER, TakeoverDetector } from "./takeover.js";

export type { Backoff } from "./backoff.js";
export { describeMqttError };

/** A connection shorter than this does not reset the backoff: it is a flap, not a recovery. */
const STABLE_MS = 10_000;
/**
 * Each try at a node gives up after this: a node that accepts the socket but stalls (NATS, for about
 * 10 s after the node leading its session stream died) must not hold a lamp that another node would take.
 */
const CONNECT_TIMEOUT_MS = 5000;
/**
 * A connection we leave stays open this long for the node to read our DISCONNECT (see leave()), then is
 * destroyed whatever happened.
 */
const LEAVE_LINGER_MS = 30_000;
/** MQTT's DISCONNECT, 3.1.1 and 5 alike (reason code 0 and no properties may be left out in 5). */
const DISCONNECT = Buffer.from([0xe0, 0x00]);
/**
 * A SUBSCRIBE unanswered this long, with no other answered meanwhile: the node is not serving us (see
 * unanswered()).
 */
const SUBACK_TIMEOUT_MS = 10_000;
/**
 * Taken over this many times in a row, it is another client for sure, and the long wait
 * (MQTT_TAKEOVER_RETRY_MS) begins. On 3.1.1 a takeover is a guess from quick closes (takeover.ts).
 */
const SURE_TAKEOVERS = 3;
/** Our own Will this shortly before a close means the broker was shutting down. */
const SHUTDOWN_WILL_MS = 1000;
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
  /** Connects before this one in this process's life: 0 for the first. */
  readonly reconnects: number;
  /** Another client with our client id took the session over at least once (two Pis, one LAMP_ID). */
  readonly takenOver: boolean;
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
  /** 1 (the default); 0 only while a broker refuses QoS 1 (see TopicRouter). */
  readonly qos?: 0 | 1;
}

/** One node of MQTT_URL, and the protocol it speaks (each falls back to 3.1.1 on its own). */
interface BrokerNode {
  readonly url: string;
  protocol: 4 | 5;
}

/** The nodes in a random order: each lamp starts at a random node and moves on in its own order. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const list = [...items];
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j] as T, list[i] as T];
  }
  return list;
}

export interface ConnectionOptions {
  /** Reconnect backoff (tests shorten it); otherwise MQTT_RECONNECT_MIN_MS and MQTT_RECONNECT_MAX_MS. */
  readonly backoff?: Backoff;
  readonly random?: () => number;
  /** How long one try waits for its CONNACK (tests shorten it); CONNECT_TIMEOUT_MS otherwise. */
  readonly connectTimeoutMs?: number;
  /** How long a SUBSCRIBE waits for its SUBACK (tests shorten it); SUBACK_TIMEOUT_MS otherwise. */
  readonly subackTimeoutMs?: number;
}

/**
 * One MQTT session with the broker, or with one cluster of brokers, kept for ever: Will set in CONNECT,
 * MQTT 5 with a fall back to 3.1.1 per node, reconnects with a jittered exponential backoff, a new node
 * of the cluster after each loss or failed try, and one clear log line when another client with our
 * client id keeps taking the session over (MQTT.js issue #1585), after which it waits
 * MQTT_TAKEOVER_RETRY_MS between tries so the two stop fighting.
 *
 * It does not use MQTT.js's own `servers` and reconnect: every client starts at `servers[0]`, moves on
 * even when its node is fine, and retries at a fixed period (mqttjs/MQTT.js #561, #982). Each try is a
 * fresh MqttClient for one node instead.
 */
export class MqttConnection {
  private client: MqttClient | undefined;
  private readonly nodes: BrokerNode[];
  private position = 0;
  private readonly backoff: ReconnectBackoff;
  private readonly takeover: TakeoverDetector;
  private readonly takeoverRetryMs: number;
  /** A connection held this long: another client with our client id, if any, stopped coming back. */
  private readonly settledMs: number;
  private readonly random: () => number;
  private readonly maxDelayMs: number;
  private readonly initialDelayMs: number;
  private readonly connectTimeoutMs: number;
  private readonly subackTimeoutMs: number;
  /** When the current connection last answered a SUBSCRIBE (0: not yet). */
  private lastSubackAt = 0;
  /** Tries given up on, still open until their node has read our DISCONNECT: closed for good by stop(). */
  private readonly abandoned = new Set<MqttClient>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectedAt = 0;
  /** Takeovers in a row since the other client last went away. */
  private takeovers = 0;
  /** When the broker last sent us our own Will (`0` on our presence topic), as it does when it shuts down. */
  private ownWillAt = 0;
  /** Connects in a row right after which another client with our client id showed itself: rivalSeen(). */
  private rivalStreak = 0;
  private rivalThisConnection = false;
  /** The CONNACK of the current (or last) connection said the broker had kept our session. */
  private sessionWasPresent = false;
  private connects = 0;
  /** The reason code of the broker's DISCONNECT for the session that is closing, if it sent one. */
  private disconnectReason: number | undefined;
  private takeoverLogged = false;
  private stopping = false;
  private lastError = "";
  /** Set when the node refused MQTT 5: try it again at once in 3.1.1 rather than after a backoff. */
  private downgraded = false;

  constructor(
    private readonly config: Config,
    private readonly events: ConnectionEvents,
    private readonly logger: Logger,
    options: ConnectionOptions = {},
  ) {
    const backoff = options.backoff ?? config.mqtt.reconnect;
    this.random = options.random ?? Math.random;
    this.nodes = shuffled(config.mqtt.urls, this.random).map((url) => ({
      url,
      protocol: config.mqtt.protocol,
    }));
    this.backoff = new ReconnectBackoff(backoff, this.random);
    this.takeoverRetryMs = config.mqtt.takeoverRetryMs;
    this.maxDelayMs = backoff.maxMs;
    this.initialDelayMs = backoff.initialMs;
    this.connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    this.subackTimeoutMs = options.subackTimeoutMs ?? SUBACK_TIMEOUT_MS;
    // The other client comes back within its wait (+20 % jitter); well past that, it is gone.
    this.settledMs = 3 * Math.max(backoff.maxMs, this.takeoverRetryMs);
    this.takeover = new TakeoverDetector(STABLE_MS, this.settledMs);
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /** The node tried or used now, its password masked. */
  get node(): string {
    return redactUrl(this.current.url);
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
    this.logger.info(
      {
        url: this.node,
        ...(this.nodes.length > 1 && { nodes: this.nodes.length }),
        clientId: this.config.mqtt.clientId,
      },
      "connecting to the broker",
    );
    this.attempt();
  }

  /** Publishes; resolves once the broker acknowledged (QoS 1) or the packet was written (QoS 0). */
  publish(topic: string, payload: string, options: PublishOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      this.publishThen(topic, payload, options, (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * publish() with a callback, which MQTT.js calls while it handles the PUBACK. The state publisher frees
   * its slot there: a command that arrived in the same read as that PUBACK then has its state written
   * together with our PUBACK for it, one write instead of two (a promise would free the slot only after
   * the whole read was handled).
   */
  publishThen(
    topic: string,
    payload: string,
    options: PublishOptions,
    done: (error?: Error | null) => void,
  ): void {
    const client = this.client;
    if (!client?.connected) {
      done(new Error("not connected"));
      return;
    }
    // The state's every publish takes the first branch: no copy of its options.
    let packet: IClientPublishOptions = options;
    if (options.userProperties) {
      const { userProperties, ...rest } = options;
      packet = this.current.protocol === 5 ? { ...rest, properties: { userProperties } } : rest;
    }
    // `done` itself, not a function around it (one fewer per state published): MQTT.js passes null
    // when there is no error, which every caller reads as none.
    client.publish(topic, payload, packet, done);
  }

  /**
   * Subscribes at QoS 1 (unless told 0); on MQTT 5 with No Local (our own publishes never come back)
   * and without Retain As Published, so the retain flag of a message means what it means on 3.1.1:
   * replayed from the broker's store at subscribe, not live. Rejects when the broker refuses (an ACL,
   * say, or a cluster node that cannot reach its peers).
   */
  subscribe(topic: string, { noLocal = true, qos = 1 }: SubscribeOptions = {}): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error("not connected"));
    const options = this.current.protocol === 5 ? { qos, nl: noLocal } : { qos };
    return new Promise((resolve, reject) => {
      // NATS answers a connection's SUBSCRIBEs one after another, taking 4 s over each it refuses: one
      // sent behind three such waits longer than the timeout on a node that is serving us. So the wait
      // counts from this SUBSCRIBE or the last one answered, whichever is later.
      let timer: NodeJS.Timeout;
      const wait = (ms: number) => {
        timer = setTimeout(() => {
          const sinceAnswer = Date.now() - this.lastSubackAt;
          if (this.client === client && sinceAnswer < this.subackTimeoutMs)
            return wait(this.subackTimeoutMs - sinceAnswer);
          reject(new Error("no answer from the broker"));
          this.unanswered(client, topic);
        }, ms);
      };
      wait(this.subackTimeoutMs);
      client.subscribe(topic, options, (error, granted) => {
        clearTimeout(timer);
        if (this.client === client) {
          this.lastSubackAt = Date.now();
          // A sign of life, as a PINGRESP is. NATS answers our PINGREQ only after the SUBSCRIBEs before
          // it, 4 s for each QoS 1 one it refuses while a node is down: with reschedulePings off, a node
          // answering every few seconds would be given up for dead, and would then process what we left
          // queued there and publish our Will while we are live on the next node.
          client.reschedulePing(true);
        }
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

  /** Ends a subscription; rejects when not connected, or when the broker does not end it. */
  unsubscribe(topic: string): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => {
      client.unsubscribe(topic, (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * Proof that another client uses our client id: we read another process's info, retained since we
   * published ours (features/info.ts). Not a `0` on our presence topic as we connect, which Aedes sends
   * on a takeover: our own Will, queued in the kept session by a dropped link, comes just the same. From
   * here on a close is that client taking the session back, whatever else it looks like (Aedes sends
   * the loser its own Will, as a broker shutting down does), until a try fails or a connection holds.
   */
  rivalSeen(): void {
    if (this.rivalThisConnection || !this.connected) return;
    this.rivalThisConnection = true;
    this.rivalStreak++;
    this.logger.debug(
      { streak: this.rivalStreak },
      "another process with our client id showed itself as we connected",
    );
  }

  /**
   * Twice in a row: once could be a twin that has since been switched off or given its own id, its info
   * still retained; a twin that is still there shows itself every time.
   */
  private get rival(): boolean {
    return this.rivalStreak >= 2;
  }

  /** Clean DISCONNECT (which does not fire the Will), bounded so a dead link cannot hold up exit. */
  async stop(timeoutMs = 2000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    for (const abandoned of this.abandoned) abandoned.end(true);
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

  private get current(): BrokerNode {
    return this.nodes[this.position % this.nodes.length] as BrokerNode;
  }

  /**
   * One try at the current node, with a fresh client: TLS files are read again, so a renewed
   * certificate is used without a restart; a pair that does not fit (mid-renewal) is reported and
   * retried later rather than thrown from inside MQTT.js.
   */
  private attempt(): void {
    if (this.stopping) return;
    const node = this.current;
    let options: IClientOptions;
    try {
      options = this.clientOptions(node.protocol);
    } catch (error) {
      this.report(new Error(`cannot use the TLS files: ${(error as Error).message}`));
      this.scheduleReconnect(this.backoff.next());
      return;
    }
    const triedAt = Date.now();
    const client = mqtt.connect(node.url, options);
    this.client = client;
    const giveUp = setTimeout(() => this.giveUp(client), this.connectTimeoutMs);
    client.on("connect", (connack) => {
      clearTimeout(giveUp);
      if (this.client !== client) return;
      // MQTT.js leaves Nagle's algorithm on (it opens the socket without noDelay). A state publish
      // written while our PUBACK for the command is still unacknowledged then waits for the broker's
      // delayed ACK: 40 ms stalls on loopback, and a reconnect backlog (sent 20 at a time, each batch
      // waiting for our PUBACKs) crawls. Every packet we send is small and wanted now. TLS sockets have
      // setNoDelay too; the WebSocket transport sets it itself (ws), hence the optional call.
      (client.stream as { setNoDelay?: (noDelay: boolean) => unknown }).setNoDelay?.(true);
      this.connectedAt = Date.now();
      this.lastSubackAt = 0;
      this.sessionWasPresent = connack.sessionPresent;
      if (!this.rivalThisConnection) this.rivalStreak = 0;
      this.rivalThisConnection = false;
      this.lastError = "";
      this.logger.info(
        {
          ...(this.nodes.length > 1 && { node: this.node }),
          protocol: protocolName(node.protocol),
          sessionPresent: connack.sessionPresent,
          // From the try's start to the CONNACK: a node that holds CONNECTs (NATS after a restart)
          // shows here, and a fleet's tries can be told from the node's answers.
          tookMs: this.connectedAt - triedAt,
        },
        "connected to the broker",
      );
      this.events.onConnect({
        protocol: node.protocol,
        sessionPresent: connack.sessionPresent,
        node: this.node,
        reconnects: this.connects++,
        takenOver: this.takeoverLogged,
      });
    });
    client.on("message", (topic, payload, packet) => {
      if (this.client !== client) return;
      if (topic === this.config.topics.presence && payload.length === 1 && payload[0] === 0x30) {
        this.ownWillAt = Date.now();
      }
      this.events.onMessage(topic, payload, packet);
    });
    client.on("disconnect", (packet) => {
      if (this.client === client) this.disconnectReason = packet.reasonCode ?? 0;
    });
    client.on("error", (error) => {
      if (this.client === client) this.onError(node, error);
    });
    client.on("close", () => {
      clearTimeout(giveUp);
      // Each client is used for one connection: MQTT.js must not reconnect it behind our back.
      client.removeAllListeners("close");
      client.on("error", () => undefined);
      client.end(true);
      if (this.client === client) this.onClose();
    });
  }

  /**
   * Gives up a try whose CONNACK did not come in time, with a DISCONNECT rather than a bare close (see
   * leave()): a node that holds CONNECTs (NATS while JetStream loads, about 14 s after a restart)
   * processes ours later anyway, and that late connection, closed bare, would publish our Will, a
   * retained `0`, while the lamp is live on another node.
   */
  private giveUp(client: MqttClient): void {
    if (client.connected || this.client !== client) return;
    this.report(
      new Error(
        `${this.node} accepted the connection but did not answer its MQTT CONNECT within ${this.connectTimeoutMs / 1000} s: is the broker starting up, or overloaded?`,
      ),
    );
    this.leave(client);
    this.onClose();
  }

  /**
   * A node that leaves a SUBSCRIBE unanswered would leave the lamp connected and deaf (seen on NATS at a
   * cluster's start: no SUBACK for 90 s). Another node is tried, with the backoff of a failed try.
   */
  private unanswered(client: MqttClient, filter: string): void {
    if (this.stopping || this.client !== client || !client.connected) return;
    this.logger.warn(
      { topic: filter, ...(this.nodes.length > 1 && { node: this.node }) },
      `the broker did not answer our subscription within ${this.subackTimeoutMs / 1000} s; reconnecting, to another node if there is one`,
    );
    this.leave(client);
    this.connectedAt = 0;
    this.position++;
    this.scheduleReconnect(this.backoff.next());
  }

  /**
   * Leaves a connection with a DISCONNECT (MQTT allows one even before the CONNACK), so the node ends it
   * without publishing our Will. The socket is half-closed, not destroyed: a reset could reach the node
   * before it read the DISCONNECT, and it closes its side itself; LEAVE_LINGER_MS bounds the wait.
   * From here on our handlers ignore this client: a late CONNACK or message does nothing.
   */
  private leave(client: MqttClient): void {
    this.client = undefined;
    this.abandoned.add(client);
    const linger = setTimeout(() => client.end(true), LEAVE_LINGER_MS);
    linger.unref();
    client.once("close", () => {
      clearTimeout(linger);
      this.abandoned.delete(client);
      client.end(true);
    });
    const stream = client.stream as { writable?: boolean; end(chunk: Buffer): unknown };
    if (stream.writable) stream.end(DISCONNECT);
    else client.end(true);
  }

  private clientOptions(protocol: 4 | 5): IClientOptions {
    const { mqtt: settings, topics } = this.config;
    return {
      ...baseClientOptions(settings, this.logger),
      clientId: settings.clientId,
      protocolVersion: protocol,
      clean: false,
      ...(protocol === 5 && {
        properties: { sessionExpiryInterval: SESSION_EXPIRY_S, maximumPacketSize: MAX_PACKET_BYTES },
      }),
      keepalive: settings.keepalive,
      // MQTT.js otherwise re-arms its ping timer on every packet sent: a timer call per command for a
      // keepalive that only matters when the link is idle (6 % of steady CPU per command, bench/regimes).
      reschedulePings: false,
      // We reconnect ourselves, with backoff and to the next node; and subscribe ourselves (the router),
      // so presence waits for the subscriptions.
      reconnectPeriod: 0,
      resubscribe: false,
      // Our own, shorter timeout gives a try up (giveUp); this only bounds a try that has no socket yet.
      connectTimeout: LEAVE_LINGER_MS,
      // Nothing piles up while offline: state is republished whole on reconnect instead.
      queueQoSZero: false,
      will: { topic: topics.presence, payload: Buffer.from("0"), qos: 1, retain: true },
    };
  }

  private onError(node: BrokerNode, error: Error & { code?: unknown }): void {
    // Stopping: the connection is being closed on purpose, and what it says now is no problem.
    if (this.stopping) return;
    // A 3.1.1-only broker answers an MQTT 5 CONNECT with "unacceptable protocol version" (1, or 132 in
    // MQTT 5 terms): speak 3.1.1 to that node from then on. The application-level echo guard covers
    // No Local.
    if (refusesMqtt5(error, node.protocol)) {
      node.protocol = 4;
      this.downgraded = true;
      this.logger.warn(
        this.nodes.length > 1 ? { node: redactUrl(node.url) } : {},
        "the broker does not speak MQTT 5; using MQTT 3.1.1",
      );
      return;
    }
    this.report(error);
  }

  /** One line per distinct cause, not one per retry. */
  private report(error: unknown): void {
    const message = explainConnectionError(
      error,
      errorContext(this.config.mqtt, this.current.protocol, this.current.url),
    );
    if (message !== this.lastError) this.logger.error({ cause: message }, "MQTT connection problem");
    this.lastError = message;
  }

  private onClose(): void {
    if (this.stopping) return;
    const lasted = this.connectedAt ? Date.now() - this.connectedAt : undefined;
    const reason = this.disconnectReason;
    this.connectedAt = 0;
    this.disconnectReason = undefined;
    if (this.downgraded) {
      // The same node again, now in 3.1.1.
      this.downgraded = false;
      this.scheduleReconnect(0);
      return;
    }
    // Another node next: the one we had may be dead, and a cluster's others are as good.
    this.position++;
    // The twin was switched off or given its own id: a close now is the broker's, not a takeover.
    if (lasted !== undefined && lasted >= this.settledMs) this.rivalStreak = 0;
    if (lasted === undefined) {
      this.takeover.failedAttempt();
      this.takeovers = 0;
      this.rivalStreak = 0;
      this.scheduleReconnect(this.backoff.next());
    } else if (this.takenOver(lasted, reason)) {
      // Back to the node we were on: the other client is there too, and a wait is what settles it.
      this.position--;
      // The first few times, the longest reconnect delay: a takeover is a guess on 3.1.1, and a wrong
      // one must not cost minutes.
      const sure = ++this.takeovers >= SURE_TAKEOVERS || this.rival;
      const wait = sure ? this.takeoverRetryMs : this.maxDelayMs;
      const delay = Math.round(wait * (1 + 0.2 * this.random()));
      this.reportTakeover(delay);
      this.scheduleReconnect(delay);
    } else {
      this.logger.warn(
        {
          ...(reason !== undefined && { reason: reasonText(reason) }),
          ...(this.nodes.length > 1 && { next: this.node }),
        },
        "lost the broker connection; the lamp keeps working and will reconnect",
      );
      // Not the streak of rival signs: a takeover that read as a broker shutdown (Aedes sends the loser its
      // own Will) ends up here, and the next connect tells.
      this.takeovers = 0;
      if (lasted >= STABLE_MS) this.backoff.reset();
      const delay = this.backoff.next();
      // Closed soon after a connect: try again quickly, within the first delay. A broker restarting is
      // then most likely still down, and the failed try tells it from a takeover (see TakeoverDetector);
      // a fleet's long-held connections, which a cluster restart ends all at once, still spread out.
      this.scheduleReconnect(lasted < STABLE_MS ? Math.min(delay, this.quickRetryMs()) : delay);
    }
  }

  /**
   * Whether the session that just closed was taken over by another client with our client id. Only a
   * session the broker had kept can be: the other client's connection keeps it alive, so a CONNACK
   * without one (a broker restarted without persistence) rules a takeover out, however quick the close;
   * so does our own Will, sent to us by a broker shutting down.
   */
  private takenOver(lasted: number, reason: number | undefined): boolean {
    if (this.rival) return this.takeover.closed(0, SESSION_TAKEN_OVER);
    // A broker that shuts down publishes its clients' Wills, ours to us too, just before it closes.
    const shutDown = Date.now() - this.ownWillAt < SHUTDOWN_WILL_MS;
    if ((!this.sessionWasPresent || shutDown) && reason !== SESSION_TAKEN_OVER) {
      this.takeover.failedAttempt();
      return false;
    }
    // On a cluster, quick closes alone are no sign: a node that has just lost a peer drops live
    // sessions while it moves their state (a NATS survivor closed one lamp twice, each 4 s after its
    // CONNACK, and the guess kept it away 24 s). A twin there still shows itself: its info as we
    // connect (rivalSeen), or MQTT 5's reason code.
    if (this.nodes.length > 1 && reason !== SESSION_TAKEN_OVER) return false;
    return this.takeover.closed(lasted, reason);
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
      `another client connected with this client id (${clientId}) and took the session over; give every lamp its own LAMP_ID (or MQTT_CLIENT_ID). Until then this one waits ${Math.round(this.takeoverRetryMs / 1000)} s (MQTT_TAKEOVER_RETRY_MS) between tries, so the two stop fighting and the fleet sees one lamp, online`,
    );
  }

  private quickRetryMs(): number {
    return Math.round(this.initialDelayMs * (0.5 + 0.5 * this.random()));
  }

  private scheduleReconnect(delayMs: number): void {
    this.logger.debug(
      { inMs: delayMs, ceilingMs: this.backoff.ceiling, ...(this.nodes.length > 1 && { node: this.node }) },
      "reconnecting",
    );
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.attempt(), delayMs);
  }
}

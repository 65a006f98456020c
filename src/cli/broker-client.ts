import { randomBytes } from "node:crypto";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createLogger } from "../log.js";
import {
  baseClientOptions,
  errorContext,
  type MqttSettings,
  refusesMqtt5,
  speak311,
} from "../mqtt/client-options.js";
import { explainConnectionError } from "../mqtt/errors.js";

type NodeProtocol = NonNullable<NonNullable<IClientOptions["servers"]>[number]["protocol"]>;
const DEFAULT_PORTS: Readonly<Record<string, number>> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 };

/** One node of MQTT_URL as MQTT.js's `servers` takes it (config.ts has already checked the URL). */
function serverOf(url: string): { host: string; port: number; protocol: NodeProtocol } {
  const parsed = new URL(url);
  const protocol = parsed.protocol.slice(0, -1) as NodeProtocol;
  // URL keeps an IPv6 address's brackets, which net.connect does not want.
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(parsed.port) || (DEFAULT_PORTS[protocol] ?? 1883), protocol };
}

/**
 * lampctl's connection: the agent's client options (credentials, TLS files, scrubbed debug output),
 * a client id of its own, and the agent's fallback to 3.1.1 when a broker refuses MQTT 5 (the demo's
 * Aedes, NATS). Given a cluster, it goes through MQTT_URL's nodes in order, one per reconnect, so a
 * node that is down does not stop it. It reconnects on its own (a one-shot command at once: MQTT.js
 * then sends an unacknowledged command again); the Session decides when to give up.
 */
export function connectClient(settings: MqttSettings, watch: boolean, timeoutMs: number): MqttClient {
  const nodes = settings.urls;
  return mqtt.connect(settings.url, {
    ...baseClientOptions(settings, createLogger({ level: "silent", format: "json" })),
    clientId: `lampctl-${randomBytes(4).toString("hex")}`,
    protocolVersion: settings.protocol,
    reconnectPeriod: watch ? 1000 : 100,
    connectTimeout: timeoutMs,
    ...(nodes.length > 1 && { servers: nodes.map(serverOf) }),
  });
}

/**
 * The node of MQTT_URL the client is on, or trying: MQTT.js takes the next of its `servers` at every
 * reconnect, ours (the 3.1.1 fallback) included, and every one emits `reconnect`.
 */
export function nodeTracker(client: MqttClient, settings: MqttSettings): () => string {
  const nodes = settings.urls;
  let reconnects = 0;
  client.on("reconnect", () => {
    reconnects++;
  });
  return () => nodes[reconnects % nodes.length] ?? settings.url;
}

/** True when the broker refused MQTT 5 and the client is reconnecting in 3.1.1. */
export function fellBack(client: MqttClient, error: unknown): boolean {
  if (!refusesMqtt5(error, client.options.protocolVersion === 5 ? 5 : 4)) return false;
  speak311(client.options);
  // Once the refused connection has closed: MQTT.js's close handler would otherwise arm its own
  // reconnect timer (watch) after ours had connected, open a second connection with the same client id
  // a second later, and the broker would close the first; everything retained came twice.
  client.once("close", () => setImmediate(() => client.reconnect()));
  return true;
}

/** The agent's own sentence for a connection problem with `node`. */
export function explain(settings: MqttSettings, client: MqttClient, error: unknown, node: string): string {
  return explainConnectionError(
    error,
    errorContext(settings, client.options.protocolVersion === 4 ? 4 : 5, node),
  );
}

/** A refused CONNECT (bad password, not authorised, banned...) does not fix itself by retrying. */
export function refusedForGood(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  // 3.1.1's "server unavailable" and MQTT 5's unavailable, busy and rate limit pass.
  return typeof code === "number" && ![3, 136, 137, 159].includes(code);
}

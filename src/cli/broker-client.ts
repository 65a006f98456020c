import { randomBytes } from "node:crypto";
import mqtt, { type MqttClient } from "mqtt";
import { createLogger } from "../log.js";
import {
  baseClientOptions,
  errorContext,
  type MqttSettings,
  refusesMqtt5,
  speak311,
} from "../mqtt/client-options.js";
import { explainConnectionError } from "../mqtt/errors.js";

/**
 * lampctl's connection: the agent's client options (credentials, TLS files, scrubbed debug output),
 * a client id of its own, and the agent's fallback to 3.1.1 when a broker refuses MQTT 5 (the demo's
 * Aedes, NATS). `watch` keeps reconnecting; a one-shot command does not.
 */
export function connectClient(settings: MqttSettings, watch: boolean, timeoutMs: number): MqttClient {
  return mqtt.connect(settings.url, {
    ...baseClientOptions(settings, createLogger({ level: "silent", format: "json" })),
    clientId: `lampctl-${randomBytes(4).toString("hex")}`,
    protocolVersion: settings.protocol,
    reconnectPeriod: watch ? 1000 : 0,
    connectTimeout: timeoutMs,
  });
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

/** The agent's own sentence for a connection problem. */
export function explain(settings: MqttSettings, client: MqttClient, error: unknown): string {
  return explainConnectionError(
    error,
    errorContext(settings, client.options.protocolVersion === 4 ? 4 : 5, settings.url),
  );
}

/** A refused CONNECT (bad password, not authorised, banned...) does not fix itself by retrying. */
export function refusedForGood(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  // 3.1.1's "server unavailable" and MQTT 5's unavailable, busy and rate limit pass.
  return typeof code === "number" && ![3, 136, 137, 159].includes(code);
}

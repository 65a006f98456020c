import mqtt, { type MqttClient } from "mqtt";
import { redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { baseClientOptions, errorContext, type MqttSettings, refusesMqtt5 } from "./client-options.js";
import { explainConnectionError, noNodeLetUsIn } from "./errors.js";

/**
 * A one-shot client (`--check`, `--test`, `--forget`): the agent's own credentials and TLS, a client id
 * of its own so a running agent is not kicked off the broker, no Will, no reconnect. Like the agent, it
 * speaks MQTT 5 and falls back to 3.1.1 when the broker refuses 5 (Aedes, NATS). Given no `url`, it
 * goes through MQTT_URL's nodes in order until one lets it in, so a cluster with a node down still
 * serves it. Rejects with the one line `explainConnectionError` gives for the agent itself (for the last
 * node, when every one failed).
 */
export async function connectOnce(
  settings: MqttSettings,
  logger: Logger,
  role: string,
  timeoutMs: number,
  url?: string,
): Promise<MqttClient> {
  const nodes = url !== undefined ? [url] : settings.urls;
  let last: unknown;
  for (const node of nodes) {
    try {
      return await connectNode(settings, logger, role, timeoutMs, node);
    } catch (error) {
      last = error;
    }
  }
  if (nodes.length === 1) throw last;
  throw new Error(noNodeLetUsIn(nodes.length, (last as Error).message), { cause: last });
}

async function connectNode(
  settings: MqttSettings,
  logger: Logger,
  role: string,
  timeoutMs: number,
  url: string,
): Promise<MqttClient> {
  try {
    return await attempt(settings, logger, role, timeoutMs, url, settings.protocol);
  } catch (error) {
    if (!refusesMqtt5((error as { cause?: unknown }).cause, settings.protocol)) throw error;
    return attempt(settings, logger, role, timeoutMs, url, 4);
  }
}

async function attempt(
  settings: MqttSettings,
  logger: Logger,
  role: string,
  timeoutMs: number,
  url: string,
  protocol: 4 | 5,
): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    ...baseClientOptions(settings, logger),
    clientId: `${settings.clientId}-${role}-${process.pid}`.slice(0, 64),
    protocolVersion: protocol,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no answer from the broker in ${timeoutMs} ms`)),
        timeoutMs,
      );
      client.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      client.once("error", (error) => {
        clearTimeout(timer);
        const text = explainConnectionError(error, errorContext(settings, protocol, url));
        reject(new Error(text, { cause: error }));
      });
      client.once("close", () => {
        clearTimeout(timer);
        reject(
          new Error(
            `${redactUrl(url)} closed the connection without accepting it: check MQTT_USERNAME ` +
              "and MQTT_PASSWORD (a password needs a user name) and the broker's log",
          ),
        );
      });
    });
  } catch (error) {
    await client.endAsync(true).catch(() => undefined);
    throw error;
  }
  // After CONNACK, a dropped connection is reported by the call that needed it.
  client.on("error", () => undefined);
  return client;
}

import mqtt, { type MqttClient } from "mqtt";
import { type Config, redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { baseClientOptions, errorContext } from "./connection.js";
import { explainConnectionError } from "./errors.js";

/**
 * A one-shot client (`--check`, `--test`, `--forget`): the agent's own credentials and
 * TLS, a client id of its own so a running agent is not kicked off the broker, no Will, no reconnect.
 * Rejects with the one line `explainConnectionError` gives for the agent itself.
 */
export async function connectOnce(
  config: Config,
  logger: Logger,
  role: string,
  timeoutMs: number,
): Promise<MqttClient> {
  const client = mqtt.connect(config.mqtt.url, {
    ...baseClientOptions(config, logger),
    clientId: `${config.mqtt.clientId}-${role}-${process.pid}`.slice(0, 64),
    protocolVersion: config.mqtt.protocol,
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
        reject(new Error(explainConnectionError(error, errorContext(config, config.mqtt.protocol))));
      });
      client.once("close", () => {
        clearTimeout(timer);
        reject(
          new Error(
            `${redactUrl(config.mqtt.url)} closed the connection without accepting it: check MQTT_USERNAME ` +
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

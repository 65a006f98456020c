import mqtt, { type MqttClient } from "mqtt";
import { type Config, redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { baseClientOptions } from "../mqtt/connection.js";
import { explainConnectionError } from "../mqtt/errors.js";

/**
 * A one-shot client for the doctor's commands (`--check`, `--test`): the agent's own credentials and
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
        reject(new Error(explainConnectionError(error, errorContext(config))));
      });
      client.once("close", () => {
        clearTimeout(timer);
        reject(new Error(`${redactUrl(config.mqtt.url)} closed the connection`));
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

function errorContext(config: Config) {
  const m = config.mqtt;
  return {
    url: redactUrl(m.url),
    protocol: m.protocol,
    caFile: m.caFile,
    clientCertificate: m.certFile !== undefined,
    credentials: m.username !== undefined || m.password !== undefined,
  };
}

/**
 * Publishes to `topic` (a sub-topic of the lamp's own, so an ACL for the lamp allows it) and waits for
 * the message to come back: proof of publish and subscribe rights, and, since a broker delivers in
 * order, that every retained message of earlier subscriptions has arrived. Rejects after `timeoutMs`.
 */
export async function roundTrip(client: MqttClient, topic: string, timeoutMs: number): Promise<void> {
  const payload = `lamp-agent ${process.pid} ${Date.now()}`;
  let onMessage: ((t: string, p: Buffer) => void) | undefined;
  const back = new Promise<void>((resolve) => {
    onMessage = (t, p) => {
      if (t === topic && p.toString() === payload) resolve();
    };
    client.on("message", onMessage);
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no round trip on ${topic} within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    const granted = await Promise.race([client.subscribeAsync(topic, { qos: 1 }), late]);
    // MQTT 5 reason codes >= 0x80 (and 3.1.1's 0x80) in a SUBACK are refusals.
    if (granted.some((g) => g.qos >= 0x80))
      throw new Error(`the broker refused the subscription to ${topic}`);
    await Promise.race([client.publishAsync(topic, payload, { qos: 1 }), late]);
    await Promise.race([back, late]);
  } finally {
    clearTimeout(timer);
    if (onMessage) client.off("message", onMessage);
  }
}

/** Where the doctor's round trips go: beside the lamp's state, where an ACL for the lamp reaches. */
export function doctorTopic(config: Config): string {
  return `${config.topics.state}/doctor`;
}

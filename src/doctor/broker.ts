import type { MqttClient } from "mqtt";
import type { Config } from "../config.js";

export { connectOnce } from "../mqtt/one-shot.js";

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

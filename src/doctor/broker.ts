import type { MqttClient } from "mqtt";
import { type Config, redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { connectOnce } from "../mqtt/one-shot.js";
import { parseInfo } from "../protocol/payloads.js";

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
    // QoS 0, like the subscriptions it follows (wiring-test.ts): on NATS a QoS 1 one needs a
    // JetStream consumer, which a cluster with a node down refuses, and its delivery takes another path.
    const granted = await Promise.race([client.subscribeAsync(topic, { qos: 0 }), late]);
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

export interface BrokerReport {
  readonly lines: readonly string[];
  readonly ok: boolean;
}

/** What `--check` publishes to the command topic: a valid command that changes nothing (a no-op). */
export const CHECK_COMMAND = JSON.stringify({ client: "lamp-agent --check" });

/**
 * `--check`'s broker part: connect as the agent would, subscribe to the lamp's command topic as the
 * agent does, and send a command that changes nothing (so a running agent ignores it) to see it come
 * back. A publish the broker refuses (MQTT 5 reason 135) is what a lamp-only ACL does and is reported,
 * not failed; a publish taken but never delivered means this user cannot read the command topic, which
 * Mosquitto does not report anywhere else: the lamp would never hear a command.
 */
export async function brokerReport(
  config: Config,
  logger: Logger,
  timeoutMs: number,
  node: string = config.mqtt.url,
): Promise<BrokerReport> {
  const url = redactUrl(node);
  const topic = config.topics.command;
  let client: MqttClient;
  try {
    client = await connectOnce(config.mqtt, logger, "check", timeoutMs, node);
  } catch (error) {
    return { lines: [`problem: broker: ${(error as Error).message}`], ok: false };
  }
  const lines = [
    `broker: connected to ${url} (MQTT ${client.options.protocolVersion === 5 ? "5" : "3.1.1"})`,
  ];
  try {
    const granted = await client.subscribeAsync(topic, { qos: 1 });
    if (granted.some((g) => g.qos >= 0x80)) {
      return {
        lines: [
          ...lines,
          `problem: broker: refused the subscription to ${topic}: check its ACL (a cluster may also refuse while one of its nodes is down; the agent retries)`,
        ],
        ok: false,
      };
    }
    lines.push(`broker: subscribed to ${topic}, granted QoS ${granted[0]?.qos ?? "?"}`);
    const back = new Promise<boolean>((resolve) => {
      client.on(
        "message",
        (t, payload) => t === topic && payload.toString() === CHECK_COMMAND && resolve(true),
      );
      // Unref'd: a deadline nobody waits for any more must not keep the process from exiting.
      setTimeout(() => resolve(false), timeoutMs).unref();
    });
    try {
      await client.publishAsync(topic, CHECK_COMMAND, { qos: 1 });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== 135) throw error;
      lines.push(
        `broker: subscribed to ${topic}; this user may not publish there (a lamp-only ACL), so no round ` +
          "trip: with Mosquitto, check that its ACL has `topic read` for it (docs/security.md)",
      );
      return { lines, ok: true };
    }
    if (await back) {
      lines.push(`broker: round trip on ${topic}: ok`);
      return { lines, ok: true };
    }
    const why =
      client.options.protocolVersion === 5
        ? `the broker took a command on ${topic} but never delivered it: this user cannot read that topic ` +
          "(check the ACL: topic read), so the lamp would never hear a command"
        : `no round trip on ${topic} within ${timeoutMs} ms: this user may not read it, or not publish to it ` +
          "(MQTT 3.1.1 cannot say which); check the ACL";
    return { lines: [...lines, `problem: broker: ${why}`], ok: false };
  } catch (error) {
    return { lines: [...lines, `problem: broker: ${(error as Error).message}`], ok: false };
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

/** How long `--check` waits for the lamp's retained info: it comes right after the SUBACK, or not at all. */
const INFO_WAIT_MS = 1000;

/**
 * What the running lamp itself says is wrong, from its retained `info` (another client with its client
 * id, say): a line for `--check`, or undefined when it says nothing or cannot be read.
 */
export async function lampProblem(
  config: Config,
  logger: Logger,
  timeoutMs: number,
): Promise<string | undefined> {
  let client: MqttClient;
  try {
    client = await connectOnce(config.mqtt, logger, "check", timeoutMs);
  } catch {
    return undefined;
  }
  try {
    const problem = new Promise<string | undefined>((resolve) => {
      client.on("message", (topic, payload) => {
        if (topic === config.topics.info) resolve(parseInfo(payload.toString())?.problem);
      });
      setTimeout(() => resolve(undefined), INFO_WAIT_MS).unref();
    });
    // QoS 0: a retained message to read, nothing to keep (a QoS 1 one may be refused: wiring-test.ts).
    await client.subscribeAsync(config.topics.info, { qos: 0 });
    return await problem;
  } catch {
    return undefined;
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

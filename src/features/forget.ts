import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import { connectOnce } from "../mqtt/one-shot.js";
import { discoveryTopics } from "./home-assistant.js";

/** A retained topic the lamp owns, and what it holds, in words for the person uninstalling. */
export interface OwnedTopic {
  readonly topic: string;
  readonly what: string;
}

/**
 * Every retained topic a lamp owns (CONTRACT section 14): its Home Assistant configs (the light and
 * every sensor, announced or not, whatever HA_DISCOVERY and TELEMETRY_INTERVAL say today: they may
 * have said otherwise when the lamp ran), its info, presence and state. Telemetry and errors are never
 * retained.
 */
export function ownedTopics(config: Config): OwnedTopic[] {
  const [light, ...sensors] = discoveryTopics(config);
  return [
    ...(light ? [{ topic: light, what: "the Home Assistant light" }] : []),
    ...sensors.map((topic) => ({
      topic,
      what: `the Home Assistant sensor ${topic.split("/").at(-2) ?? ""}`,
    })),
    { topic: config.topics.info, what: "the lamp's info" },
    { topic: config.topics.presence, what: "the lamp's presence" },
    { topic: config.topics.state, what: "the lamp's last state" },
  ];
}

/** How long retained messages may take to arrive after the SUBACK before we take the list as whole. */
const SETTLE_MS = 300;

/**
 * `lamp-agent --forget`: an empty retained message on every topic the lamp owns, which is how MQTT
 * deletes a retained message (and how Home Assistant is told to remove an entity). Returns the topics
 * that held something, to say what was removed; the others are cleared too, in case one arrived late.
 * A one-shot client with its own client id, so a running agent is not kicked off the broker (but it
 * announces itself again at its next connect: stop it first), and without a Will.
 */
export async function forget(config: Config, logger: Logger, timeoutMs = 10_000): Promise<OwnedTopic[]> {
  const owned = ownedTopics(config);
  const client = await connectOnce(config.mqtt, logger, "forget", timeoutMs);
  const held = new Set<string>();
  client.on("message", (topic, payload, packet) => {
    if (packet.retain && payload.length > 0) held.add(topic);
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the broker in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([
      (async () => {
        // QoS 0: the retained messages are all it reads; QoS 1 would need a JetStream consumer per
        // topic on NATS, which a cluster with a node down refuses.
        await client.subscribeAsync(
          owned.map(({ topic }) => topic),
          { qos: 0 },
        );
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
        await Promise.all(owned.map(({ topic }) => client.publishAsync(topic, "", { qos: 1, retain: true })));
      })(),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
    await client.endAsync(true).catch(() => undefined);
  }
  return owned.filter(({ topic }) => held.has(topic));
}

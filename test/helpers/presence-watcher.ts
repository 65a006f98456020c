import mqtt, { type MqttClient } from "mqtt";

/** One presence message as the watcher received it. */
export interface PresenceSample {
  readonly at: number;
  /** The payload: "1", "0", or "" when the retained presence was cleared. */
  readonly value: string;
  readonly retain: boolean;
}

/** The worst time one lamp read offline while its process ran. */
export interface OfflineSpan {
  readonly id: string;
  readonly ms: number;
  /** When that span began. */
  readonly from: number;
}

export interface PresenceWatcher {
  /** Every presence message for `id`, oldest first. */
  timeline(id: string): readonly PresenceSample[];
  /** The presence `id` reads now, or undefined before any message. */
  current(id: string): string | undefined;
  /** Every watched lamp reads "1" now. */
  allOnline(): boolean;
  /** Resolves once allOnline(), or rejects after `timeoutMs` naming the lamps that do not. */
  waitAllOnline(timeoutMs?: number): Promise<void>;
  /**
   * The longest time any lamp read anything but "1" while alive (by `alive(id)`, e.g. Fleet.alive),
   * from `from` (default: the watcher's start) to now. A lamp with no message yet counts as offline.
   */
  worstOfflineWhileAlive(alive: (id: string) => { from: number; to: number }, from?: number): OfflineSpan;
  /** The longest time `id` read anything but "1" between `from` and `to` (what it read before counts). */
  worstOfflineWithin(id: string, from: number, to: number): OfflineSpan;
  /** Disconnects the subscriber (what teardown calls). */
  end(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Subscribes on one node (`url`) to the presence of `ids` (`state/<id>`, the agent's default) and
 * records each message with its arrival time. It reconnects by itself if its node goes away, and the
 * retained replay after that reconnect is recorded like any message.
 */
export async function watchPresence(
  url: string,
  ids: readonly string[],
  topicOf: (id: string) => string = (id) => `state/${id}`,
): Promise<PresenceWatcher> {
  const startedAt = Date.now();
  const idOfTopic = new Map(ids.map((id) => [topicOf(id), id]));
  const samples = new Map<string, PresenceSample[]>(ids.map((id) => [id, []]));
  const client: MqttClient = await mqtt.connectAsync(url, {
    protocolVersion: 4,
    reconnectPeriod: 500,
    connectTimeout: 10_000,
  });
  client.on("error", () => {});
  client.on("message", (topic, payload, packet) => {
    const id = idOfTopic.get(topic);
    if (id === undefined) return;
    samples.get(id)?.push({ at: Date.now(), value: payload.toString(), retain: packet.retain });
  });
  // QoS 1 and a clean session: after a reconnect the retained values come again, so nothing is missed
  // for long, while a refused subscription is an error here rather than a silent gap.
  const granted = await client.subscribeAsync([...idOfTopic.keys()], { qos: 1 });
  const refused = granted.filter((g) => g.qos !== 1);
  if (refused.length > 0) throw new Error(`presence subscription refused: ${JSON.stringify(refused)}`);
  client.on("connect", () => {
    void client.subscribeAsync([...idOfTopic.keys()], { qos: 1 }).catch(() => {});
  });

  const timeline = (id: string): PresenceSample[] => {
    const found = samples.get(id);
    if (!found) throw new Error(`lamp ${id} is not watched`);
    return found;
  };
  const current = (id: string) => timeline(id).at(-1)?.value;
  const worstOfflineWithin = (id: string, start: number, to: number): OfflineSpan => {
    let worst: OfflineSpan = { id, ms: 0, from: start };
    let value = "";
    let since = start;
    const consider = (until: number) => {
      if (value !== "1" && until - since > worst.ms) worst = { id, ms: until - since, from: since };
    };
    for (const sample of timeline(id)) {
      if (sample.at > to) break;
      if (sample.at > start) consider(sample.at);
      if (sample.value !== value) since = Math.max(start, sample.at);
      value = sample.value;
    }
    consider(to);
    return worst;
  };
  const offline = () => ids.filter((id) => current(id) !== "1");
  return {
    timeline,
    current,
    allOnline: () => offline().length === 0,
    async waitAllOnline(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (offline().length > 0) {
        if (Date.now() > deadline) {
          const detail = offline().map((id) => `${id}=${current(id) ?? "nothing"}`);
          throw new Error(`not online after ${timeoutMs} ms: ${detail.join(", ")}`);
        }
        await sleep(100);
      }
    },
    worstOfflineWhileAlive(alive, from = startedAt) {
      let worst: OfflineSpan = { id: "", ms: 0, from };
      for (const id of ids) {
        const life = alive(id);
        const span = worstOfflineWithin(id, Math.max(from, life.from), life.to);
        if (span.ms > worst.ms) worst = span;
      }
      return worst;
    },
    worstOfflineWithin,
    async end() {
      await client.endAsync(true);
    },
  };
}

import { randomBytes } from "node:crypto";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { describe, expect, it } from "vitest";
import { type AedesCluster, startAedesCluster } from "../helpers/aedes-cluster.js";
import { hasNatsServer, hasRedisServer, type TestCluster, whileKilled, within } from "../helpers/cluster.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { startNatsCluster } from "../helpers/nats-cluster.js";
import { teardown } from "../helpers/teardown.js";

// The fleet tests stand on these clusters, so the clusters themselves are checked here with plain
// MQTT.js clients: both engines speak MQTT 3.1.1 only.
const V4 = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 30_000 } as const;
const SLOW = 120_000;

const engines = [
  {
    engine: "nats",
    missing: hasNatsServer() ? "" : " (skipped: nats-server is not installed; .ci/run installs it)",
    start: () => startNatsCluster({ nodes: 3 }),
  },
  {
    engine: "aedes",
    missing: hasRedisServer() ? "" : " (skipped: redis-server is not installed; .ci/run installs it)",
    start: () => startAedesCluster({ nodes: 3 }),
  },
] as const;

function tag(): string {
  return randomBytes(4).toString("hex");
}

function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { ...V4, ...options });
}

/** Tries of at most 6 s each, until the node accepts the connection or `totalMs` has passed. */
async function connectRetrying(
  url: string,
  options: IClientOptions,
  totalMs: number,
  onMessage?: (topic: string, payload: Buffer) => void,
): Promise<MqttClient> {
  const end = Date.now() + totalMs;
  for (;;) {
    const client = mqtt.connect(url, { ...V4, connectTimeout: 5000, ...options });
    client.on("error", () => undefined);
    // From the start: a kept session's queued message can come in the same read as the CONNACK, and
    // MQTT.js hands it out before the caller's await resumes.
    if (onMessage) client.on("message", onMessage);
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          client.once("connect", () => resolve());
          client.once("close", () => reject(new Error("closed before CONNACK")));
        }),
        6000,
        `a connection to ${url}`,
      );
      return client;
    } catch (error) {
      client.end(true);
      if (Date.now() > end) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

for (const { engine, missing, start } of engines) {
  describe.skipIf(missing !== "")(`a real 3-node ${engine} cluster${missing}`, () => {
    const track = teardown("all");
    let cluster: TestCluster;

    it(
      "starts with every node serving MQTT on its own port",
      async () => {
        cluster = track(await start());
        expect(new Set(cluster.urls).size).toBe(3);
        expect(cluster.mqttUrl).toBe(cluster.urls.join(","));
        for (let i = 0; i < 3; i++) expect(cluster.pid(i)).toBeGreaterThan(0);
      },
      SLOW,
    );

    it("shares retained messages: published on node 0, read on node 2", async () => {
      const topic = `harness/${tag()}/retained`;
      const publisher = track(await connect(cluster.url(0)));
      await publisher.publishAsync(topic, "kept", { qos: 1, retain: true });
      const reader = track(await Recorder.connect(cluster.url(2), [topic], V4));
      const got = await reader.wait(topic);
      expect(got).toMatchObject({ text: "kept", retain: true });
    });

    it("tells which node holds a client", async () => {
      const id = `harness-${tag()}`;
      track(await connect(cluster.url(1), { clientId: id }));
      await expect.poll(() => cluster.nodeOfClient(id)).toBe(1);
      expect(await cluster.clientsOf(1)).toContain(id);
      expect(await cluster.clientsOf(0)).not.toContain(id);
    });

    it(
      "keeps a persistent session through kill -9 of its node: a QoS 1 message sent meanwhile arrives on another node",
      async () => {
        const id = `harness-${tag()}`;
        const topic = `harness/${tag()}/cmd`;
        const first = await connect(cluster.url(1), { clientId: id, clean: false });
        const granted = await first.subscribeAsync(topic, { qos: 1 });
        expect(granted[0]?.qos).toBe(1);
        first.on("error", () => {});

        await whileKilled(cluster, 1, async () => {
          expect(cluster.pid(1)).toBeUndefined();
          first.end(true);
          // The sender behaves as a real controller does: NATS may hold a survivor's connections for about
          // 10 s after a node dies and drop them unanswered, so it reconnects and sends the QoS 1 message again
          // until it is acknowledged (MQTT.js resends unacknowledged packets on reconnect).
          const publisher = track(
            mqtt.connect(cluster.url(0), { ...V4, reconnectPeriod: 1000, connectTimeout: 5000 }),
          );
          publisher.on("error", () => undefined);
          const acknowledged = publisher.publishAsync(topic, "while away", { qos: 1 });

          // MQTT.js's connectAsync never settles when the server closes before answering: bounded tries.
          let arrived: (text: string) => void = () => undefined;
          const message = new Promise<string>((resolve) => {
            arrived = resolve;
          });
          // Reconnecting by itself into its kept session: a survivor may drop it too in those 10 s.
          track(
            await connectRetrying(
              cluster.url(2),
              { clientId: id, clean: false, reconnectPeriod: 1000 },
              60_000,
              (t, payload) => t === topic && arrived(payload.toString()),
            ),
          );
          expect(await within(message, 45_000, "the message sent while away")).toBe("while away");
          await within(acknowledged, 45_000, "the PUBACK of the message sent while away");
        });
        expect(cluster.pid(1)).toBeGreaterThan(0);
      },
      SLOW,
    );

    if (engine === "aedes") {
      it(
        "publishes a killed node's Wills late, from a survivor, within a few heartbeats",
        async () => {
          const aedes = cluster as AedesCluster;
          const willTopic = `harness/${tag()}/will`;
          const watcher = track(await Recorder.connect(cluster.url(0), [willTopic], V4));
          const victim = await connect(cluster.url(2), {
            clientId: `harness-${tag()}`,
            will: { topic: willTopic, payload: Buffer.from("0"), qos: 1, retain: true },
          });
          victim.on("error", () => {});
          const killedAt = Date.now();
          await whileKilled(cluster, 2, async () => {
            const will = await watcher.wait(willTopic, () => true, 10 * aedes.heartbeatInterval + 5000);
            victim.end(true);
            expect(will.text).toBe("0");
            // Late, not at the death: no survivor acts before the dead node misses its heartbeats.
            expect(will.at - killedAt).toBeGreaterThanOrEqual(aedes.heartbeatInterval);
          });
        },
        SLOW,
      );
    }

    if (engine === "nats") {
      it(
        "publishes no Will for the clients of a killed node",
        async () => {
          const willTopic = `harness/${tag()}/will`;
          const watcher = track(await Recorder.connect(cluster.url(0), [willTopic], V4));
          const victim = await connect(cluster.url(2), {
            clientId: `harness-${tag()}`,
            will: { topic: willTopic, payload: Buffer.from("0"), qos: 1, retain: true },
          });
          victim.on("error", () => {});
          // The Will works when the node lives: a dropped connection fires it...
          const control = await connect(cluster.url(1), {
            clientId: `harness-${tag()}`,
            will: { topic: willTopic, payload: Buffer.from("control"), qos: 1 },
          });
          control.stream.destroy();
          await watcher.wait(willTopic, (text) => text === "control");
          // ...and not when the node dies.
          await whileKilled(cluster, 2, async () => {
            victim.end(true);
            await new Promise((resolve) => setTimeout(resolve, 5000));
            // QoS 1 is at least once: the control Will may come twice. The victim's `0` must not come at all.
            const heard = watcher.on(willTopic).map((m) => m.text);
            expect(heard).toContain("control");
            expect(heard).not.toContain("0");
          });
        },
        SLOW,
      );
    }

    it(
      "comes back whole after every node restarts",
      async () => {
        const topic = `harness/${tag()}/restart`;
        const publisher = track(await connect(cluster.url(1)));
        await publisher.publishAsync(topic, "before", { qos: 1, retain: true });
        publisher.end(true);
        await cluster.restartAll();
        const reader = track(await Recorder.connect(cluster.url(0), [topic], V4));
        expect((await reader.wait(topic, () => true, 20_000)).text).toBe("before");
      },
      SLOW,
    );
  });
}

import mqtt from "mqtt";
import { describe, expect, it } from "vitest";
import { hasNatsServer } from "../helpers/cluster.js";
import { type Fleet, startFleet } from "../helpers/fleet.js";
import type { LogLine } from "../helpers/log.js";
import { type NatsCluster, startNatsCluster } from "../helpers/nats-cluster.js";
import { connectedSpans, worstOfflineWhileConnected } from "../helpers/offline.js";
import { type PresenceWatcher, watchPresence } from "../helpers/presence-watcher.js";
import { teardown } from "../helpers/teardown.js";

// The runner and the presence watcher that the fleet tests use, checked on one node of a NATS cluster:
// today's agent takes one URL, and the runner hands MQTT_URL over unchanged.
const missing = hasNatsServer() ? "" : " (skipped: nats-server is not installed; .ci/run installs it)";
const SLOW = 120_000;

describe.skipIf(missing !== "")(`a fleet of built agents on one NATS node${missing}`, () => {
  const track = teardown("all");
  let cluster: NatsCluster;
  let fleet: Fleet;
  let watcher: PresenceWatcher;

  it(
    "starts 5 agents that all read online on another node",
    async () => {
      cluster = track(await startNatsCluster({ nodes: 3 }));
      fleet = track(startFleet({ count: 5, mqttUrl: cluster.url(0) }));
      watcher = track(await watchPresence(cluster.url(2), fleet.ids));
      expect(new Set(fleet.ids).size).toBe(5);
      await watcher.waitAllOnline(60_000);
      expect(watcher.allOnline()).toBe(true);
      for (const lamp of fleet.lamps) expect(await cluster.nodeOfClient(lamp.clientId)).toBe(0);
    },
    SLOW,
  );

  it("counts a 0 read for a live lamp, and not the 0 of a lamp that died", async () => {
    const [dead, slandered] = fleet.ids;
    if (!dead || !slandered) throw new Error("the fleet has fewer than 2 lamps");
    const from = Date.now();
    await fleet.kill(dead);
    // The node lives, so it fires the Will of the killed agent.
    await expect.poll(() => watcher.current(dead), { timeout: 30_000 }).toBe("0");
    expect(watcher.worstOfflineWhileAlive(fleet.alive, from).ms).toBeLessThan(1000);

    // A stray retained 0 for a lamp that runs: the watcher must count it.
    const liar = await mqtt.connectAsync(cluster.url(1), { protocolVersion: 4 });
    await liar.publishAsync(`state/${slandered}`, "0", { qos: 1, retain: true });
    await liar.endAsync();
    await expect.poll(() => watcher.timeline(slandered).some((s) => s.value === "0")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const worst = watcher.worstOfflineWhileAlive(fleet.alive, from);
    expect(worst.id).toBe(slandered);
    expect(worst.ms).toBeGreaterThan(0);
    // It was connected all along, so it counts there too; the dead lamp's 0 came after its end.
    const whileConnected = worstOfflineWhileConnected(fleet, watcher, from);
    expect(whileConnected.id).toBe(slandered);
    expect(whileConnected.ms).toBeGreaterThan(0);
  });

  it(
    "sees every lamp offline once the fleet stops",
    async () => {
      await fleet.stop();
      for (const lamp of fleet.lamps) expect(lamp.exitedAt()).toBeDefined();
      await expect
        .poll(() => fleet.ids.every((id) => watcher.current(id) === "0"), { timeout: 15_000 })
        .toBe(true);
    },
    SLOW,
  );
});

describe("connectedSpans", () => {
  const line = (time: number, msg: string, extra: Record<string, unknown> = {}): LogLine =>
    ({ level: 30, time, msg, ...extra }) as LogLine;

  it("runs from each CONNACK to its logged loss, or to the start of the next successful try", () => {
    const logs = [
      line(100, "lamp ready"),
      line(1000, "connected to the broker", { tookMs: 50 }),
      line(5000, "lost the broker connection; the lamp keeps working and will reconnect"),
      line(9000, "connected to the broker", { tookMs: 3000 }),
      // A loss that was not logged at info (a takeover's): the next try started at 14000.
      line(15000, "connected to the broker", { tookMs: 1000 }),
    ];
    expect(connectedSpans(logs, 20000)).toEqual([
      { from: 1000, to: 5000 },
      { from: 9000, to: 14000 },
      { from: 15000, to: 20000 },
    ]);
    expect(connectedSpans([line(100, "lamp ready")], 20000)).toEqual([]);
  });

  it("ends a span where the lamp says it was taken over, not when it is next back", () => {
    const logs = [
      line(1000, "connected to the broker", { tookMs: 50 }),
      // The takeover's own line, then the wait (MQTT_RECONNECT_MAX_MS or MQTT_TAKEOVER_RETRY_MS).
      line(5000, "another client connected with this client id (lamp-a) and took the session over; ..."),
      line(30000, "connected to the broker", { tookMs: 10 }),
    ];
    expect(connectedSpans(logs, 40000)).toEqual([
      { from: 1000, to: 5000 },
      { from: 30000, to: 40000 },
    ]);
  });
});

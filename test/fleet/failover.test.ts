import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { startAedesCluster } from "../helpers/aedes-cluster.js";
import { type AgentProcess, spawnAgent, white } from "../helpers/agent-process.js";
import { hasNatsServer, hasRedisServer, type TestCluster, within } from "../helpers/cluster.js";
import { type Fleet, type FleetLamp, startWatchedFleet } from "../helpers/fleet.js";
import type { LogLine } from "../helpers/log.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { startNatsCluster } from "../helpers/nats-cluster.js";
import { worstOfflineWhileConnected } from "../helpers/offline.js";
import { type PresenceWatcher, watchPresence } from "../helpers/presence-watcher.js";
import { teardown } from "../helpers/teardown.js";

// Issue 18 on both engines: a fleet of built agents, each given every node of a real 3-node cluster,
// through kill -9 of a node, a command during the failover, a group command after it, a restart of the
// whole cluster, and two agents given one LAMP_ID. The agents run with their default reconnect range
// (1 s to 20 s): what a fleet gets out of the box. The figures themselves are bench/fleet.mjs's.
const LAMPS = Number(process.env.FLEET_LAMPS ?? 30);
const SLOW = 180_000;
const V4 = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 } as const;
/** Aedes sweeps a dead node's Wills 3 to 7 heartbeats after its death (1 s each here); then the answers. */
const WILL_SWEEP_MS = 7 * 1000 + 3000;

const engines = [
  {
    engine: "nats",
    missing: hasNatsServer() ? "" : " (skipped: nats-server is not installed; .ci/run installs it)",
    start: (): Promise<TestCluster> => startNatsCluster({ nodes: 3 }),
  },
  {
    engine: "aedes",
    missing: hasRedisServer() ? "" : " (skipped: redis-server is not installed; .ci/run installs it)",
    start: (): Promise<TestCluster> => startAedesCluster({ nodes: 3, heartbeatInterval: 1000 }),
  },
] as const;

const tag = () => randomBytes(3).toString("hex");

/** When the agent logged each line matching `msg`, from `since` on (pino's `time`, epoch ms). */
function logged(logs: readonly LogLine[], msg: string, since = 0): number[] {
  return logs.filter((l) => l.msg === msg && (l.time as number) >= since).map((l) => l.time as number);
}

/** The most of `times` that fall within any one window of `windowMs`. */
function busiestWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while ((sorted[end] as number) - (sorted[start] as number) >= windowMs) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}

/**
 * Subscribes at QoS 1, again until granted: a NATS cluster with a node down refuses some SUBSCRIBEs
 * (SUBACK 0x80), which is the cluster's doing, not the lamps'.
 */
async function subscribeGranted(
  recorder: Recorder,
  topics: string[],
  timeoutMs = 20_000,
  qos: 0 | 1 = 1,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const granted = await recorder.client.subscribeAsync(topics, { qos });
      if (granted.every((g) => g.qos === qos)) return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`subscription to ${topics} refused for ${timeoutMs} ms`);
    await sleep(500);
  }
}

const lampIdOf = (clientId: string, fleet: Fleet) => fleet.ids.find((id) => `lamp-${id}` === clientId);

describe.each(engines)("a fleet on a 3-node $engine cluster", ({ engine, missing, start }) => {
  describe.skipIf(missing !== "")(`${LAMPS} built agents, MQTT_URL = every node${missing}`, () => {
    const track = teardown("all");
    let cluster: TestCluster;
    let fleet: Fleet;
    let watcher: PresenceWatcher;
    // The presence watcher and the test's clients stay on node 0; the victim is another node.
    let victim = 1;
    let victims: string[] = [];
    let killedAt = 0;
    let commanded = "";
    const during = `during-${tag()}`;

    it(
      "spreads over the nodes and reads online",
      async () => {
        cluster = track(await start());
        // The watcher subscribes before any lamp starts (see startWatchedFleet).
        const startedAt = Date.now();
        const watched = await startWatchedFleet({
          count: LAMPS,
          mqttUrl: cluster.mqttUrl,
          watchUrl: cluster.url(0),
        });
        fleet = track(watched.fleet);
        watcher = track(watched.watcher);
        try {
          await watcher.waitAllOnline(90_000);
        } catch (error) {
          // Seen once in CI on NATS: one lamp of 30 never read at all. What it read and logged.
          throw new Error(`${String(error)}\n${offlineReport(fleet, watcher, startedAt)}`, { cause: error });
        }
        const held = await Promise.all([0, 1, 2].map((i) => cluster.clientsOf(i)));
        const ours = held.map((ids) => ids.filter((c) => lampIdOf(c, fleet) !== undefined).length);
        expect(ours.reduce((a, b) => a + b, 0)).toBe(LAMPS);
        // A random first node per lamp: no node is left empty (1 in 10^13 for 30 lamps, by chance).
        for (const count of ours) expect(count).toBeGreaterThan(0);
        victim = (ours[1] ?? 0) >= (ours[2] ?? 0) ? 1 : 2;
      },
      SLOW,
    );

    it(
      `kill -9 of a node: its lamps are back on the others within 30 s, and a QoS 1 command sent meanwhile is applied once`,
      async () => {
        victims = (await cluster.clientsOf(victim)).flatMap((c) => lampIdOf(c, fleet) ?? []);
        expect(victims.length).toBeGreaterThan(0);
        commanded = victims[0] as string;
        // Both behave as a real controller and UI do. A NATS survivor may close their connections without
        // an answer for about 10 s after a node dies (docs/fleet.md): they reconnect by themselves, the UI
        // into its kept session, and MQTT.js sends the unacknowledged command again.
        const steady = { ...V4, reconnectPeriod: 1000 };
        const changed = track(
          await Recorder.connect(cluster.url(0), [], { ...steady, clean: false, clientId: `ui-${tag()}` }),
        );
        await subscribeGranted(changed, [`lamp/${commanded}/changed`]);
        const controller = track(await Recorder.connect(cluster.url(0), [], steady));

        killedAt = Date.now();
        await cluster.kill(victim);
        const acknowledged = within(
          controller.publish(`lamp/${commanded}/set_config`, white(0.37, during), { qos: 1 }),
          45_000,
          "the command's PUBACK",
        );
        acknowledged.catch(() => undefined); // awaited below, after the lamps' 30 s

        // Every lamp of the dead node is connected to a survivor again.
        const deadline = killedAt + 30_000;
        let missingLamps = victims;
        while (missingLamps.length > 0 && Date.now() < deadline) {
          await sleep(250);
          const held = await within(
            Promise.all([cluster.clientsOf(0), cluster.clientsOf(3 - victim)]),
            5000,
            "the survivors' client lists",
          );
          const back = new Set(held.flat());
          missingLamps = victims.filter((id) => !back.has(`lamp-${id}`));
        }
        expect(missingLamps, `not back within 30 s of the kill`).toEqual([]);
        await acknowledged;

        // The command queued in its session while it was away: applied when it is back, once. Its state
        // names the sender as a rule; but a NATS survivor can close the lamp's connection in the same
        // 10 s, before that publish went out, and on the reconnect the lamp states itself whole in its own
        // name (CONTRACT section 2). Either way the UI reads the command's brightness.
        const applied = await changed.wait(
          `lamp/${commanded}/changed`,
          (t) => (JSON.parse(t) as { brightness?: number }).brightness === 0.37,
          30_000,
        );
        expect(JSON.parse(applied.text)).toMatchObject({ on: true, brightness: 0.37 });
        expect([during, `lamp-${commanded}`]).toContain(JSON.parse(applied.text).client);
        const agent = fleet.lamp(commanded).agent;
        await expect.poll(() => [...agent.duties().values()], { timeout: 5000 }).toEqual([0.37, 0.37, 0.37]);
        // Long enough for a redelivery (the session's QoS 1 retry) to have come and been applied again.
        await sleep(3000);
        const live = changed
          .on(`lamp/${commanded}/changed`)
          .filter((m) => !m.retain && m.text.includes(during));
        expect(live.length).toBeLessThanOrEqual(1);
        // Once: the agent's own log, whatever reached this UI.
        const changes = agent.logs.filter((l) => l.msg === "state changed" && l.client === during);
        expect(changes.map((l) => l.changes ?? 1)).toEqual([1]);
      },
      SLOW,
    );

    it(
      "no live lamp reads offline for more than 5 s, and after the Will sweep every lamp reads 1",
      async () => {
        await sleep(Math.max(0, killedAt + WILL_SWEEP_MS - Date.now()));
        try {
          await watcher.waitAllOnline(5000);
        } catch (error) {
          // What each lamp still offline read and logged since the kill, in ms from it.
          throw new Error(`${String(error)}\n${offlineReport(fleet, watcher, killedAt)}`, { cause: error });
        }
        // While connected, by the lamp's own log: a NATS survivor may also drop a live lamp's connection
        // in the 10 s after a node died, and then the Will it publishes is true, not late; such a lamp
        // read 0 for 21.5 s in one CI run, until it was back. Back it must be: every lamp reads 1 now.
        const worst = worstOfflineWhileConnected(fleet, watcher, killedAt);
        // On failure: what that lamp read and logged since the kill, in ms from it.
        expect(
          worst.ms,
          `lamp ${worst.id} read offline while connected from ${worst.from - killedAt} ms after the kill\n${
            worst.id === "" ? "" : lampReport(fleet.lamp(worst.id), watcher, killedAt)
          }`,
        ).toBeLessThan(5000);
        // The late Wills came as a rule on Aedes (else this proved nothing): some lamp of the dead node
        // read 0 since. NATS publishes none, and Aedes none for a lamp that was back before the sweep
        // (all of them, in one run here): then the sweep's message by hand, a retained 0 on a live lamp,
        // which it must answer in time too.
        const slandered = victims.filter((id) =>
          watcher.timeline(id).some((s) => s.at > killedAt && s.value === "0"),
        );
        if (slandered.length === 0) {
          const id = victims[0] as string;
          const sweeper = track(await Recorder.connect(cluster.url(0), [], V4));
          const sentAt = Date.now();
          await sweeper.publish(`state/${id}`, "0", { qos: 1, retain: true });
          const since = (value: string) =>
            watcher.timeline(id).find((s) => s.at >= sentAt && s.value === value)?.at;
          await expect.poll(() => since("0"), { timeout: 5000 }).toBeDefined();
          await expect.poll(() => since("1"), { timeout: 5000 }).toBeDefined();
          expect((since("1") as number) - (since("0") as number)).toBeLessThan(5000);
        }
      },
      SLOW,
    );

    it(
      "after the failover every lamp obeys a group command and answers on its own changed",
      async () => {
        const client = `group-${tag()}`;
        // QoS 0: while a node is down, a NATS survivor refused a new client's QoS 1 SUBSCRIBE for 20 s
        // straight in CI (a new JetStream consumer for its session); a QoS 0 one needs none. The lamps'
        // own subscriptions are older than the failover.
        const changed = track(await Recorder.connect(cluster.url(0), [], V4));
        await subscribeGranted(changed, ["lamp/+/changed"], 20_000, 0);
        const sentAt = Date.now();
        await changed.publish("lamp/group/all/set_config", white(0.61, client), { qos: 1 });
        // Every lamp obeys: its pins show the command.
        const dark = () => fleet.lamps.filter((lamp) => !showing(lamp.agent));
        for (const until = Date.now() + 20_000; dark().length > 0 && Date.now() < until; ) await sleep(100);
        // On failure: what each dark lamp read and logged since the kill, in ms from it.
        expect(
          dark().map((lamp) => lamp.id),
          `group command sent ${sentAt - killedAt} ms after the kill\n${dark()
            .map((lamp) => lampReport(lamp, watcher, killedAt))
            .join("\n")}`,
        ).toEqual([]);
        // And says so on its own changed. Live to this one watcher as a rule; a live copy the cluster's
        // bus lost on the way to this watcher's node (one lamp of 30 in one CI run, on Aedes) must then
        // be the retained state, which only the lamp's own publish can have put there.
        const unheard = () =>
          fleet.ids.filter(
            (id) => !changed.on(`lamp/${id}/changed`).some((m) => !m.retain && m.text.includes(client)),
          );
        for (const until = Date.now() + 5000; unheard().length > 0 && Date.now() < until; ) await sleep(100);
        const late = unheard();
        expect(late.length, `no live state from ${late}`).toBeLessThanOrEqual(1);
        if (late.length > 0) {
          const topics = late.map((id) => `lamp/${id}/changed`);
          // Node 0: the one of the failover is still down until the restart test.
          const reader = track(await Recorder.connect(cluster.url(0), [], V4));
          await subscribeGranted(reader, topics, 20_000, 0);
          for (const topic of topics) await reader.wait(topic, (text) => text.includes(client), 10_000);
        }
      },
      SLOW,
    );

    it(
      "a lamp started while a node is down says 1 and obeys within seconds",
      async () => {
        // A new lamp has no session: on NATS each of its QoS 1 SUBSCRIBEs needs a new JetStream consumer,
        // which a cluster with a node down may refuse, after 4 s, for as long as the node is down. It must
        // listen at QoS 0 meanwhile.
        const prefix = `new${tag()}`;
        const ids = [0, 1, 2].map((n) => `${prefix}-${n}`);
        const ui = track(await Recorder.connect(cluster.url(0), [], V4));
        await subscribeGranted(
          ui,
          ids.map((id) => `state/${id}`),
          20_000,
          0,
        );
        const startedAt = Date.now();
        const lamps = ids.map((id) => track(spawnAgent(cluster.mqttUrl, { LOG_LEVEL: "info" }, { id })));
        const report = () =>
          lamps
            .map((agent) =>
              [
                `${agent.id}: ${ui.on(`state/${agent.id}`).map((m) => `${m.at - startedAt}:${m.text}`)}`,
                ...logReport(agent, startedAt),
              ].join("\n"),
            )
            .join("\n");
        try {
          // NATS answers a lamp's SUBSCRIBEs one after another, 4 s for each QoS 1 one it refuses (a lamp
          // has four or five), after a connect that may stall too: 2 to 27 s in all, over 18 lamps here.
          const deadline = startedAt + 40_000;
          for (const id of ids)
            await ui.wait(`state/${id}`, (t) => t === "1", Math.max(1, deadline - Date.now()));
          // Listening as it says: a command now is obeyed at once, whatever QoS its subscription got.
          for (const id of ids) await ui.publish(`lamp/${id}/set_config`, white(0.29, "new"), { qos: 1 });
          for (const agent of lamps) {
            await expect
              .poll(() => [...agent.duties().values()], { timeout: 5000 })
              .toEqual([0.29, 0.29, 0.29]);
          }
          // And still, well after it asked for QoS 1 again (and again refused): on NATS a refused QoS 1
          // SUBSCRIBE takes the filter's QoS 0 subscription with it, so the lamp must not ask on it.
          await sleep(Math.max(0, startedAt + 25_000 - Date.now()));
          for (const id of ids) await ui.publish(`lamp/${id}/set_config`, white(0.61, "new"), { qos: 1 });
          for (const agent of lamps) {
            await expect
              .poll(() => [...agent.duties().values()], { timeout: 5000 })
              .toEqual([0.61, 0.61, 0.61]);
          }
        } catch (error) {
          throw new Error(`${String(error)}\n${report()}`, { cause: error });
        }
        await Promise.all(lamps.map((agent) => agent.stop()));
      },
      SLOW,
    );

    /** After the restart: when each lamp was answered, and when it had sent the CONNECT so answered. */
    let restart: { times: number[]; tries: number[]; upAt: number; stoppedAt: number } | undefined;

    it(
      "a whole-cluster restart: every lamp back within 30 s of the cluster being up",
      async () => {
        // A settled fleet: the dead node back, and every connection older than the agent's 10 s
        // "stable" mark (a lamp whose connection was younger retries within a second: see the report).
        await cluster.start(victim);
        const lastConnect = Math.max(
          ...fleet.lamps.flatMap((lamp) => logged(lamp.agent.logs, "connected to the broker")),
        );
        await sleep(Math.max(0, lastConnect + 12_000 - Date.now()));
        const stoppedAt = Date.now();
        await cluster.restartAll();
        const upAt = Date.now();
        // Presence proves nothing here: a node stopped by SIGTERM fires no Will (NATS) or fires them
        // before the lamps are back (Aedes). Each agent's own log says when it reconnected.
        const firsts = () =>
          fleet.lamps.map(
            (lamp) =>
              lamp.agent.logs.filter(
                (l) => l.msg === "connected to the broker" && (l.time as number) >= stoppedAt,
              )[0],
          );
        await expect
          .poll(() => firsts().filter((l) => l === undefined).length, { timeout: 30_000, interval: 250 })
          .toBe(0);
        const lines = firsts() as LogLine[];
        const times = lines.map((l) => l.time as number);
        expect(Math.max(...times) - upAt).toBeLessThan(30_000);
        restart = {
          times,
          tries: lines.map((l) => (l.time as number) - (l.tookMs as number)),
          upAt,
          stoppedAt,
        };
      },
      SLOW,
    );

    // On NATS a CONNECT held past the agent's 5 s connect timeout is processed later anyway, after the
    // lamp has connected elsewhere: found with this report in CI (9 of 30 lamps read 0), when a try given
    // up on was closed bare and NATS published that dead connection's Will. It now ends with DISCONNECT.
    it(
      "after that restart every lamp reads 1",
      async () => {
        if (!restart) throw new Error("the restart test did not run");
        const { stoppedAt } = restart;
        try {
          await watcher.waitAllOnline(10_000);
        } catch (error) {
          // What each lamp still offline read and logged since the stop.
          throw new Error(`${String(error)}\n${offlineReport(fleet, watcher, stoppedAt)}`, { cause: error });
        }
      },
      SLOW,
    );

    // What the lamps control: when they try. Each lamp's successful try began `tookMs` (its log) before
    // the answer.
    it("after that restart no one second holds more than 40% of the lamps' tries that brought them back", () => {
      if (!restart) throw new Error("the restart test did not run");
      const { tries, upAt } = restart;
      const spread = tries.map((t) => t - upAt).sort((a, b) => a - b);
      expect(
        busiestWindow(tries, 1000),
        `tries at ${spread} ms from the cluster being up`,
      ).toBeLessThanOrEqual(Math.floor(0.4 * LAMPS));
    });

    // What the node does with them. A restarted NATS node holds each CONNECT until JetStream is ready
    // (about 9 to 14 s for all three), then answers all of them at once: the lamps whose try was pending
    // then, spread over the 5 s before, connect within the same few hundred milliseconds (17 of 30 in
    // one run here, from tries of which no second held more than 6). Only a shorter connect timeout
    // would shrink that bunch, at the cost of giving up on slow but healthy links. Skipped on NATS for
    // that reason (docs/fleet.md); on Aedes, which answers at once, the answers are the tries.
    it.skipIf(engine === "nats")(
      "after that restart no one second holds more than 40% of the reconnects",
      () => {
        if (!restart) throw new Error("the restart test did not run");
        const { times, upAt } = restart;
        const spread = times.map((t) => t - upAt).sort((a, b) => a - b);
        expect(
          busiestWindow(times, 1000),
          `reconnects at ${spread} ms after the cluster was up`,
        ).toBeLessThanOrEqual(Math.floor(0.4 * LAMPS));
      },
    );

    // On Aedes a takeover also sends the old connection its own Will, which alone reads like a broker
    // shutting down. Each agent tells a twin by signs that need no timing: the other's info, retained
    // since its own (features/info.ts), and the Will the new connection receives (presence.ts).
    it(
      "two agents given one LAMP_ID: one lamp, steadily online, at most one takeover per MQTT_TAKEOVER_RETRY_MS, each says so once",
      async () => {
        const id = `twin${tag()}`;
        const retryMs = 5000;
        const env = {
          LOG_LEVEL: "debug",
          MQTT_TAKEOVER_RETRY_MS: String(retryMs),
          // The first takeovers wait the longest reconnect delay: a short one keeps the settling short.
          MQTT_RECONNECT_MAX_MS: "2000",
        };
        const twinWatcher = track(await watchPresence(cluster.url(0), [id]));
        const twins: AgentProcess[] = [
          track(spawnAgent(cluster.mqttUrl, env, { id })),
          track(spawnAgent(cluster.mqttUrl, env, { id })),
        ];
        const settleFrom = Date.now();
        await sleep(20_000);
        const windowFrom = Date.now();
        await sleep(25_000);
        const connects = twins.flatMap((twin) => logged(twin.logs, "connected to the broker", windowFrom));
        // On failure, each twin's lines from the settling on, in ms from it: what read as what.
        const story = twins
          .map((twin, i) =>
            twin.logs
              .filter((l) => (l.time as number) >= settleFrom && l.level >= 20)
              .map(
                (l) =>
                  `twin ${i} ${(l.time as number) - settleFrom} ${l.msg} ${JSON.stringify(l.streak ?? l.inMs ?? "")}`,
              )
              .join("\n"),
          )
          .join("\n");
        expect(busiestWindow(connects, retryMs), story).toBeLessThanOrEqual(1);
        expect(twinWatcher.current(id)).toBe("1");
        const alive = () => ({ from: settleFrom, to: Date.now() });
        const worst = twinWatcher.worstOfflineWhileAlive(alive, windowFrom);
        expect(worst.ms).toBeLessThan(2000);
        for (const twin of twins) {
          const said = twin.logs.filter((l) => l.level === 50 && l.msg.includes("took the session over"));
          expect(said).toHaveLength(1);
        }
      },
      SLOW,
    );
  });
});

/** Each lamp not reading `1`: its presence messages and log lines since `since`, in ms from it. */
function offlineReport(fleet: Fleet, watcher: PresenceWatcher, since: number): string {
  return fleet.lamps
    .filter((lamp) => watcher.current(lamp.id) !== "1")
    .map((lamp) => lampReport(lamp, watcher, since))
    .join("\n");
}

/** One lamp's presence messages and log lines since `since`, in ms from it. */
function lampReport(lamp: FleetLamp, watcher: PresenceWatcher, since: number): string {
  const presence = watcher
    .timeline(lamp.id)
    .filter((s) => s.at >= since - 1000)
    .map((s) => `${s.at - since}:${s.value}${s.retain ? "r" : ""}`);
  return [`${lamp.id} presence ${presence.join(" ")}`, ...logReport(lamp.agent, since)].join("\n");
}

/** An agent's log lines since `since`, in ms from it, each with what it is about. */
function logReport(agent: AgentProcess, since: number): string[] {
  return agent.logs
    .filter((l) => (l.time as number) >= since)
    .map(
      (l) =>
        `  ${(l.time as number) - since} ${l.level} ${l.msg} ${JSON.stringify(l.topic ?? l.node ?? l.cause ?? "")}`,
    );
}

function showing(agent: AgentProcess): boolean {
  const duties = [...agent.duties().values()];
  return duties.length === 3 && duties.every((d) => Math.abs(d - 0.61) < 1e-9);
}

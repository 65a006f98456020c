// `npm run bench:fleet`: a fleet of built agents (30 by default) on a real 3-node cluster of each engine
// (NATS with its MQTT listener, Aedes over Redis), every agent given every node in MQTT_URL and its
// default reconnect range. Per engine: the cross-node command p95, the failover time after kill -9 of a
// node, the worst time a live lamp read offline (while its process ran, and while it was connected), and
// the reconnects after a whole-cluster restart (the node's answers, and the lamps' tries they answered).
// Prints one table and writes bench/results/<date>-<host>-fleet.json. See docs/performance.md.
//
//   npm run bench:fleet                       both engines, 30 lamps, about 4 minutes
//   BENCH_FLEET_LAMPS=12 npm run bench:fleet  another fleet size
//   BENCH_FLEET_ENGINES=aedes npm run bench:fleet
//
// The clusters and the fleet are the tests' own (test/helpers), bundled on the fly with esbuild.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const HELPERS = path.join(ROOT, "test", "helpers");
const LAMPS = Number(process.env.BENCH_FLEET_LAMPS ?? 30);
const ENGINES = (process.env.BENCH_FLEET_ENGINES ?? "nats,aedes").split(",");
const COMMANDS = 200;
/** The agent's "stable connection" mark (src/mqtt/connection.ts): a restart is measured on older ones. */
const STABLE_MS = 10_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

// The bundle sits beside the helpers, so their paths relative to import.meta.url (dist/main.js,
// aedes-node.mjs) still hold.
const bundle = path.join(HELPERS, `.fleet-bench-${process.pid}.mjs`);
await build({
  stdin: {
    contents: [
      'export { startNatsCluster } from "./nats-cluster.ts";',
      'export { startAedesCluster } from "./aedes-cluster.ts";',
      'export { hasNatsServer, hasRedisServer } from "./cluster.ts";',
      'export { startWatchedFleet } from "./fleet.ts";',
      'export { worstOfflineWhileConnected } from "./offline.ts";',
      'export { Recorder } from "./mqtt-client.ts";',
      'export { white } from "./agent-process.ts";',
    ].join("\n"),
    resolveDir: HELPERS,
    loader: "ts",
  },
  bundle: true,
  platform: "node",
  format: "esm",
  packages: "external",
  outfile: bundle,
  logLevel: "error",
});
const h = await import(bundle);
rmSync(bundle, { force: true });

const V4 = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 };
const connected = (lamp, since = 0) =>
  lamp.agent.logs.filter((l) => l.msg === "connected to the broker" && l.time >= since).map((l) => l.time);

/** The most of `times` within any one window of `windowMs`. */
function busiest(times, windowMs) {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let end = 0, start = 0; end < sorted.length; end++) {
    while (sorted[end] - sorted[start] >= windowMs) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}

async function subscribeGranted(client, topics) {
  for (let tries = 0; ; tries++) {
    const granted = await client.subscribeAsync(topics, { qos: 1 }).catch(() => []);
    if (granted.length > 0 && granted.every((g) => g.qos === 1)) return;
    if (tries > 40) throw new Error(`subscription to ${topics} refused`);
    await sleep(500);
  }
}

async function nodesOf(cluster, fleet) {
  const byClient = new Map(fleet.lamps.map((l) => [l.clientId, l.id]));
  const held = await Promise.all([0, 1, 2].map((i) => cluster.clientsOf(i)));
  return held.map((ids) => ids.flatMap((c) => byClient.get(c) ?? []));
}

async function waitStable(fleet) {
  const last = Math.max(...fleet.lamps.flatMap((lamp) => connected(lamp)));
  await sleep(Math.max(0, last + STABLE_MS + 2000 - Date.now()));
}

async function measure(engine) {
  const cluster =
    engine === "nats" ? await h.startNatsCluster({ nodes: 3 }) : await h.startAedesCluster({ nodes: 3 });
  // The watcher subscribes before any lamp starts (startWatchedFleet says why).
  const { fleet, watcher } = await h.startWatchedFleet({
    count: LAMPS,
    mqttUrl: cluster.mqttUrl,
    watchUrl: cluster.url(0),
  });
  const result = { engine, lamps: LAMPS };
  try {
    await watcher.waitAllOnline(120_000);
    const spread = (await nodesOf(cluster, fleet)).map((ids) => ids.length);
    result.spread = spread;
    process.stderr.write(`${engine}: ${LAMPS} lamps online, per node ${spread.join("/")}\n`);

    // Cross-node commands: published on node 0 to lamps held by nodes 1 and 2, until the state is
    // back on node 0.
    const remote = (await nodesOf(cluster, fleet)).slice(1).flat();
    const observer = await h.Recorder.connect(cluster.url(0), [], V4);
    // As the agent does: with Nagle on, a PUBLISH written while our PUBACK for the last state is
    // unacknowledged waits for the broker's delayed ACK (40 ms), and that is all one would measure.
    observer.client.stream.setNoDelay?.(true);
    await subscribeGranted(observer.client, ["lamp/+/changed"]);
    const rtts = [];
    // Each lamp's brightness alternates from one round to the next: a command that changes nothing
    // publishes nothing.
    for (let n = 0; n < COMMANDS; n++) {
      const id = remote[n % remote.length];
      const client = `bench-${n}`;
      const sent = performance.now();
      const arrived = observer.next(`lamp/${id}/changed`, (t) => t.includes(`"${client}"`), 10_000);
      await observer.publish(
        `lamp/${id}/set_config`,
        h.white(Math.floor(n / remote.length) % 2 ? 0.3 : 0.7, client),
        { qos: 1 },
      );
      await arrived;
      rtts.push(performance.now() - sent);
    }
    await observer.end();
    result.crossNodeMs = { p50: percentile(rtts, 50), p95: percentile(rtts, 95), n: rtts.length };

    // kill -9 of the node (1 or 2) holding more lamps; the watcher stays on node 0.
    await waitStable(fleet);
    const held = await nodesOf(cluster, fleet);
    const victim = held[1].length >= held[2].length ? 1 : 2;
    const victims = held[victim];
    const killedAt = Date.now();
    await cluster.kill(victim);
    let missing = victims;
    while (missing.length > 0 && Date.now() - killedAt < 60_000) {
      await sleep(100);
      const back = new Set([...(await cluster.clientsOf(0)), ...(await cluster.clientsOf(3 - victim))]);
      missing = victims.filter((id) => !back.has(`lamp-${id}`));
    }
    result.failover = { lampsOnNode: victims.length, lastBackMs: Date.now() - killedAt, notBack: missing };
    // Aedes' Will sweep (1 s heartbeats here: 3 to 7 s) and the answers.
    await sleep(Math.max(0, killedAt + 12_000 - Date.now()));
    const worst = watcher.worstOfflineWhileAlive(fleet.alive, killedAt);
    // A lamp a NATS survivor dropped reads its (true) Will until it is back; what presence must avoid
    // is a lamp read offline while it listens.
    const worstConnected = h.worstOfflineWhileConnected(fleet, watcher, killedAt);
    const slandered = victims.filter((id) =>
      watcher.timeline(id).some((s) => s.at > killedAt && s.value === "0"),
    );
    const timeline = (id) =>
      watcher
        .timeline(id)
        .filter((s) => s.at > killedAt)
        .map((s) => `${s.at - killedAt}:${s.value}`);
    result.presence = {
      worstOfflineMs: worst.ms,
      worstOfflineWhileConnectedMs: worstConnected.ms,
      worstLamp: {
        id: worst.id,
        fromKillMs: worst.from - killedAt,
        timeline: worst.id ? timeline(worst.id) : [],
      },
      notOnline: fleet.ids
        .filter((id) => watcher.current(id) !== "1")
        .map((id) => ({ id, timeline: timeline(id) })),
      lateZeros: slandered.length,
      allOnlineAfter: watcher.allOnline(),
    };

    // A whole-cluster restart of a settled fleet.
    await cluster.start(victim);
    await waitStable(fleet);
    const stoppedAt = Date.now();
    await cluster.restartAll();
    const upAt = Date.now();
    const firstLines = () =>
      fleet.lamps.map(
        (lamp) =>
          lamp.agent.logs.filter((l) => l.msg === "connected to the broker" && l.time >= stoppedAt)[0],
      );
    while (firstLines().some((l) => l === undefined) && Date.now() - upAt < 60_000) await sleep(250);
    const lines = firstLines().filter((l) => l !== undefined);
    const times = lines.map((l) => l.time);
    // When each lamp began the try the node answered: the lamps' own spread, apart from the node's.
    const tries = lines.map((l) => l.time - (l.tookMs ?? 0));
    const perSecond = new Map();
    for (const t of times)
      perSecond.set(Math.floor((t - upAt) / 1000), (perSecond.get(Math.floor((t - upAt) / 1000)) ?? 0) + 1);
    result.restart = {
      clusterUpMs: upAt - stoppedAt,
      back: times.length,
      lastBackAfterUpMs: Math.max(...times) - upAt,
      busiestSecond: busiest(times, 1000),
      busiestShare: busiest(times, 1000) / LAMPS,
      busiestSecondOfTries: busiest(tries, 1000),
      perSecond: Object.fromEntries([...perSecond].sort((a, b) => a[0] - b[0])),
    };
  } finally {
    await fleet.stop();
    await watcher.end();
    await cluster.close();
  }
  return result;
}

const results = [];
for (const engine of ENGINES) {
  const missing = engine === "nats" ? !h.hasNatsServer() : !h.hasRedisServer();
  if (missing) {
    process.stderr.write(
      `${engine}: skipped (${engine === "nats" ? "nats-server" : "redis-server"} missing)\n`,
    );
    continue;
  }
  results.push(await measure(engine));
}

const ms = (v) => `${Math.round(v)} ms`;
const rows = [
  ["lamps per node at start", (r) => r.spread.join("/")],
  ["cross-node command p50 / p95", (r) => `${ms(r.crossNodeMs.p50)} / ${ms(r.crossNodeMs.p95)}`],
  ["kill -9: lamps on the node", (r) => String(r.failover.lampsOnNode)],
  ["kill -9: last lamp back after", (r) => ms(r.failover.lastBackMs)],
  ["worst offline while alive", (r) => ms(r.presence.worstOfflineMs)],
  ["worst offline while connected", (r) => ms(r.presence.worstOfflineWhileConnectedMs)],
  ["lamps reading a late 0", (r) => String(r.presence.lateZeros)],
  ["all online after the sweep", (r) => String(r.presence.allOnlineAfter)],
  ["restart: cluster up after", (r) => ms(r.restart.clusterUpMs)],
  ["restart: last lamp back (from up)", (r) => ms(r.restart.lastBackAfterUpMs)],
  [
    "restart: busiest second",
    (r) => `${r.restart.busiestSecond} (${Math.round(100 * r.restart.busiestShare)}%)`,
  ],
  ["restart: busiest second of the tries", (r) => String(r.restart.busiestSecondOfTries)],
];
const width = Math.max(...rows.map(([name]) => name.length));
console.log(`${"".padEnd(width)}  ${results.map((r) => r.engine.padEnd(16)).join("")}`);
for (const [name, cell] of rows)
  console.log(`${name.padEnd(width)}  ${results.map((r) => cell(r).padEnd(16)).join("")}`);
for (const r of results)
  console.log(`${r.engine} reconnects per second after the restart (s from up: count):`, r.restart.perSecond);

mkdirSync(path.join(ROOT, "bench", "results"), { recursive: true });
const file = path.join(
  ROOT,
  "bench",
  "results",
  `${new Date().toISOString().slice(0, 10)}-${hostname()}-fleet.json`,
);
writeFileSync(
  file,
  `${JSON.stringify({ at: new Date().toISOString(), node: process.version, results }, null, 2)}\n`,
);
console.log(`written to ${path.relative(ROOT, file)}`);

// What a broker's Nagle algorithm costs a lamp and the people driving it: the built agent (mock driver)
// behind four brokers on loopback, Mosquitto as Debian installs it and with `set_tcp_nodelay true`, Aedes
// on a plain net.Server and with `noDelay`, and `npm run demo`'s own broker. For each: start -> presence `1`
// (a restart, with the session the broker kept, and a new lamp's first start), and the round trip of a
// UI's command (QoS 1 out, `changed` in on a QoS 1 subscription, as LAMPI's UIs and lampctl do), one
// every 50 ms like a dragged slider. The measuring client has Nagle off itself.
//
//   npm run build && node bench/nagle.mjs [commands]    prints one row per broker, and a JSON line
import { spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  freePort,
  median,
  now,
  percentile,
  Recorder,
  ROOT,
  sleep,
  spawnBuiltAgent,
  startBroker,
  stopChild,
  tempDir,
  waitForPort,
} from "./lib.mjs";

const COMMANDS = Number(process.argv[2] ?? 100);
const WARMUP = 20;
const STARTS = 5;
const dir = tempDir();

/** Aedes in its own process (so its event loop is not the measuring client's), with or without noDelay. */
async function startAedes(noDelay) {
  const port = await freePort();
  const script = path.join(dir, `aedes-${port}.mjs`);
  writeFileSync(
    script,
    [
      "import net from 'node:net';",
      "import { createRequire } from 'node:module';",
      `const { Aedes } = createRequire(${JSON.stringify(path.join(ROOT, "package.json"))})("aedes");`,
      "const broker = await Aedes.createBroker();",
      `net.createServer(${noDelay ? "{ noDelay: true }" : "{}"}, broker.handle).listen(${port}, "127.0.0.1");`,
      "",
    ].join("\n"),
  );
  const child = spawn(process.execPath, [script], { stdio: "ignore" });
  await waitForPort(port);
  return { url: `mqtt://127.0.0.1:${port}`, stop: () => stopChild(child) };
}

/** `npm run demo` itself (its broker, built as the demo builds it, and its own lamp, "demo"). */
async function startDemo() {
  const child = spawn(process.execPath, [path.join(ROOT, "dist/cli/demo.js")], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, STATE_FILE: path.join(dir, "demo-state.json") },
    stdio: ["ignore", "pipe", "ignore"],
  });
  let out = "";
  const url = await new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const found = /broker (mqtt:\/\/[\d.]+:\d+)/.exec(out);
      if (found) resolve(found[1]);
    });
    child.once("exit", () => reject(new Error(`the demo exited: ${out}`)));
  });
  child.stdout.resume();
  return { url, stop: () => stopChild(child, "SIGINT") };
}

const BROKERS = [
  { name: "mosquitto, Debian's default", start: () => startBroker(dir, { nodelay: false }), v5: true },
  { name: "mosquitto, set_tcp_nodelay true", start: () => startBroker(dir, { nodelay: true }), v5: true },
  { name: "aedes, net.createServer()", start: () => startAedes(false), v5: false },
  { name: "aedes, { noDelay: true }", start: () => startAedes(true), v5: false },
  { name: "npm run demo (its broker)", start: startDemo, v5: false },
];

/** Every agent started, so a run that fails halfway leaves none behind. */
const agents = new Set();

function launchAgent(url, id, v5) {
  const child = spawnBuiltAgent(dir, url, id, v5 ? {} : { MQTT_PROTOCOL: "3.1.1" });
  agents.add(child);
  child.once("exit", () => agents.delete(child));
  return { stop: () => stopChild(child) };
}

async function measure(broker) {
  const server = await broker.start();
  const id = `nagle${Math.floor(Math.random() * 1e6)}`;
  const ui = await Recorder.connect(server.url, [`state/${id}`, `lamp/${id}/changed`]);
  try {
    // Start -> presence, with the session the broker kept since the last start (a lamp's restart: it
    // says `1` at the CONNACK) and with a new one (a new lamp: `1` once every SUBACK is in). The first
    // start writes the code cache (src/code-cache.ts) and is not counted.
    const kept = [];
    const fresh = [];
    for (let i = 0; i <= 2 * STARTS; i++) {
      const lamp = i % 2 === 1 ? `${id}n${i}` : id;
      const presence = ui.next(`state/${lamp}`, (text) => text === "1");
      if (lamp !== id) await ui.client.subscribeAsync(`state/${lamp}`, { qos: 1 });
      const started = now();
      const agent = launchAgent(server.url, lamp, broker.v5);
      const { at } = await presence;
      if (i > 0) (lamp === id ? kept : fresh).push(at - started);
      await sleep(i === 0 ? 6000 : 300);
      if (i < 2 * STARTS) await agent.stop();
      else broker.agent = agent;
    }
    const trips = [];
    for (let i = 0; i < WARMUP + COMMANDS; i++) {
      const brightness = Math.round((0.1 + (i % 80) / 100) * 100) / 100;
      const state = ui.next(`lamp/${id}/changed`, (text) => {
        const s = JSON.parse(text);
        return s.brightness === brightness && s.client === "bench-ui";
      });
      const sent = now();
      await ui.client.publishAsync(
        `lamp/${id}/set_config`,
        JSON.stringify({ on: true, brightness, client: "bench-ui" }),
        { qos: 1 },
      );
      const { at } = await state;
      if (i >= WARMUP) trips.push(at - sent);
      await sleep(50);
    }
    await broker.agent.stop();
    trips.sort((a, b) => a - b);
    return {
      startKeptMs: median(kept),
      startNewMs: median(fresh),
      tripP50Ms: percentile(trips, 50),
      tripP90Ms: percentile(trips, 90),
    };
  } finally {
    await ui.end();
    await server.stop();
  }
}

const results = {};
try {
  for (const broker of BROKERS) {
    results[broker.name] = await measure(broker);
    const r = results[broker.name];
    process.stdout.write(
      `${broker.name.padEnd(40)} start -> presence ${r.startKeptMs.toFixed(1).padStart(6)} ms (kept session), ${r.startNewMs.toFixed(1).padStart(6)} ms (new)   command round trip p50 ${r.tripP50Ms.toFixed(2).padStart(6)} ms, p90 ${r.tripP90Ms.toFixed(2).padStart(6)} ms\n`,
    );
  }
  process.stdout.write(
    `${JSON.stringify({ date: new Date().toISOString(), commands: COMMANDS, results })}\n`,
  );
} finally {
  for (const child of agents) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

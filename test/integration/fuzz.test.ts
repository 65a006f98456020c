import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { beforeAll, describe, expect, it } from "vitest";
import { MAX_PAYLOAD_BYTES } from "../../src/lamp/command.js";
import { type RunningAgent, startAgent } from "../helpers/agent.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { random as prng } from "../helpers/random-commands.js";
import { teardown } from "../helpers/teardown.js";

// A real collection between rounds, so the comparison is of live memory, not of garbage not yet swept.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const EXTREMES = [
  0,
  1,
  -0,
  0.005,
  0.995,
  0.125,
  1e-320,
  -1e-320,
  1 + 1e-15,
  1e308,
  -1e308,
  3600,
  3600.0001,
  2 ** 53,
];
const CLIENTS = [
  "",
  "x",
  "é".repeat(64),
  "a".repeat(64),
  "a".repeat(65),
  "\u0000",
  "\ud83d\udca1".repeat(32),
  "lamp",
];

function generator(random: () => number) {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const unit = () => (random() < 0.3 ? pick(EXTREMES) : Math.round(random() * 100) / 100);
  const valid = () => {
    const command: Record<string, unknown> = {};
    if (random() < 0.6) command.on = random() < 0.5;
    if (random() < 0.6) command.brightness = unit();
    if (random() < 0.5) command.color = { h: unit(), s: unit() };
    if (random() < 0.3) command.transition = random() < 0.5 ? pick([0, 3600, 0.001]) : random() * 2;
    if (random() < 0.7) command.client = pick(CLIENTS);
    return JSON.stringify(command);
  };
  const randomBytes = (length: number) =>
    Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
  const mutate = (text: string) => {
    const chars = [...text];
    for (let i = 0, n = 1 + Math.floor(random() * 4); i < n; i++) {
      const at = Math.floor(random() * (chars.length + 1));
      const op = random();
      if (op < 0.4) chars.splice(at, 1);
      else if (op < 0.8)
        chars.splice(at, 0, pick(['"', "{", "}", "[", ",", ":", "\\", "0", "e", "-", "\u0000"]));
      else chars.splice(at, chars.length);
    }
    return chars.join("");
  };
  const nasty: (() => string | Buffer)[] = [
    () => '{"__proto__": {"on": false}}',
    () => '{"constructor": {"prototype": {"on": false}}}',
    () => '{"color": {"__proto__": {"h": 1}}}',
    () => '{"on": true, "on": false, "client": "dup"}',
    () => `${"[".repeat(2000)}${"]".repeat(2000)}`,
    () => `{"a":${'{"a":'.repeat(600)}1${"}".repeat(601)}`,
    () => '\ufeff{"on": true}',
    () => Buffer.from([0xc0, 0xaf, 0x7b, 0x7d]),
    () => Buffer.from([0xed, 0xa0, 0x80]),
    () => `{"brightness": ${"9".repeat(400)}}`,
    () => '{"brightness": 1e999}',
    () => '{"brightness": "0.5"}',
    () => '{"brightness": null}',
    () => '{"color": [0.5, 1]}',
    () => "null",
    () => "true",
    () => '"on"',
    () => "",
    () => " ".repeat(MAX_PAYLOAD_BYTES + 1),
    () => `{"client": "${"x".repeat(MAX_PAYLOAD_BYTES)}"}`,
  ];
  return (): string | Buffer => {
    const r = random();
    if (r < 0.3) return valid();
    if (r < 0.5) return mutate(valid());
    if (r < 0.7) return pick(nasty)();
    if (r < 0.8) return randomBytes(Math.floor(random() * 300));
    if (r < 0.83) return randomBytes(MAX_PAYLOAD_BYTES + Math.floor(random() * 2000));
    return JSON.stringify(pick([[], {}, 1, "x", null, { on: 1 }, { transition: -1 }, { color: { h: 2 } }]));
  };
}

function expectValidState(agent: RunningAgent): void {
  const state = agent.agent.state;
  expect(state).toBeDefined();
  if (!state) return;
  expect(typeof state.on).toBe("boolean");
  for (const value of [state.brightness, state.color.h, state.color.s]) {
    expect(value).toBeGreaterThanOrEqual(0);
    expect(value).toBeLessThanOrEqual(1);
    expect(Math.round(value * 100) / 100).toBe(value);
  }
  expect(Object.keys(state).sort()).toEqual(["brightness", "color", "on"]);
  expect(Object.keys(state.color).sort()).toEqual(["h", "s"]);
  for (const duty of agent.driver.duties) {
    expect(duty).toBeGreaterThanOrEqual(0);
    expect(duty).toBeLessThanOrEqual(1);
  }
}

describe("fuzz: thousands of random, malformed and extreme commands", () => {
  const track = teardown("all");
  let broker: TestBroker;
  beforeAll(async () => {
    broker = track(await startBroker());
  });

  it("leaves the agent alive and connected, its state valid, its replies rate-limited and its memory flat", async () => {
    const agent = track(await startAgent(broker.url, {}, { level: "warn" }));
    const base = `lamp/${agent.id}`;
    const sender = track(await Recorder.connect(broker.url, []));
    const watcher = track(
      await Recorder.connect(broker.url, [`${base}/error`, `${base}/changed`, "homeassistant/light/#"]),
    );
    await watcher.wait(`${base}/changed`);
    const next = generator(prng(0x1a4b));
    const rounds = 10;
    const perRound = 1000;
    const samples: { heap: number; rss: number }[] = [];
    let errors = 0;
    let configs = 0;
    const trouble: unknown[] = [];
    const started = Date.now();
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < perRound; i++) {
        const retain = i % 97 === 0;
        sender.client.publish(`${base}/set_config`, next(), { qos: i % 5 === 0 ? 1 : 0, retain });
        // Home Assistant's status topic is network input too: a flood of "online" must not become a flood.
        if (i % 10 === 0) sender.client.publish("homeassistant/status", i % 20 === 0 ? "online" : next());
        if (i % 100 === 0) await sleep(1);
      }
      // Above the 64 KiB maximum packet size the agent announced: the broker drops it for us.
      sender.client.publish(`${base}/set_config`, Buffer.alloc(100 * 1024, 0x7b), { qos: 0 });
      await sender.publish(`${base}/set_config`, '{"on": true, "brightness": 0.37, "client": "sentinel-a"}');
      await sender.publish(
        `${base}/set_config`,
        `{"on": true, "brightness": 0.38, "client": "sentinel-${round}"}`,
      );
      await watcher.wait(`${base}/changed`, (t) => JSON.parse(t).client === `sentinel-${round}`, 20_000);
      expectValidState(agent);
      errors += watcher.on(`${base}/error`).length;
      configs += watcher.messages.filter((m) => m.topic.startsWith("homeassistant/")).length;
      watcher.clear();
      // Warnings for rejected commands are expected (rate-limited); anything about the connection is not.
      trouble.push(...agent.logs.filter((l) => Number(l.level) >= 50 || String(l.msg).includes("broker")));
      agent.logs.length = 0;
      gc();
      const memory = process.memoryUsage();
      samples.push({ heap: memory.heapUsed, rss: memory.rss });
    }
    const seconds = (Date.now() - started) / 1000;
    // Replies are rate-limited: a burst of 10, then 2 a second.
    expect(errors).toBeGreaterThan(0);
    expect(errors).toBeLessThanOrEqual(10 + 2 * seconds + 2);
    expect(configs).toBeLessThanOrEqual(1 + 3 + 0.2 * seconds + 1);
    // Still connected all along: no disconnect, no reconnect, and it still obeys.
    expect(trouble).toEqual([]);
    await sender.publish(`${base}/set_config`, '{"on": false, "client": "after"}');
    await watcher.wait(`${base}/changed`, (t) => JSON.parse(t).client === "after");
    expect(agent.agent.state?.on).toBe(false);

    // Memory: the first round warms up (JIT, buffers, pools); after it, growth stays small.
    const first = samples[1] as { heap: number; rss: number };
    const last = samples.at(-1) as { heap: number; rss: number };
    const mb = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
    const report = samples.map((s) => `${mb(s.heap)}/${mb(s.rss)}`).join(" ");
    console.log(
      `fuzz: ${rounds * perRound} payloads in ${seconds.toFixed(1)} s, ${errors} error replies, ${configs} discovery configs; heap/RSS MB per round: ${report}`,
    );
    expect(last.heap - first.heap, report).toBeLessThan(8 * 2 ** 20);
    expect(last.rss - first.rss, report).toBeLessThan(40 * 2 ** 20);
  }, 120_000);
});

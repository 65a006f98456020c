import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { startAgent } from "../helpers/agent.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { teardown } from "../helpers/teardown.js";

const trackAll = teardown("all");
const track = teardown("each");
let broker: TestBroker;

beforeAll(async () => {
  broker = trackAll(await startBroker());
});

async function lamp(env: Record<string, string> = {}, url = broker.url) {
  const agent = track(await startAgent(url, env));
  const base = `lamp/${agent.id}`;
  const watcher = track(await Recorder.connect(broker.url, [`state/${agent.id}`, `${base}/#`]));
  await watcher.wait(`state/${agent.id}`, (t) => t === "1");
  await watcher.wait(`${base}/changed`);
  return { ...agent, base, watcher, presence: `state/${agent.id}` };
}

const state = (text: string) => JSON.parse(text) as Record<string, unknown>;

describe("agent on a real broker", () => {
  it("announces presence 1 then its whole state, both retained", async () => {
    const { watcher, presence, base, id } = await lamp();
    const late = track(await Recorder.connect(broker.url, [presence, `${base}/changed`]));
    expect((await late.wait(presence)).retain).toBe(true);
    expect(late.on(presence).at(-1)?.text).toBe("1");
    const changed = await late.wait(`${base}/changed`);
    expect(changed.retain).toBe(true);
    expect(state(changed.text)).toEqual({
      on: true,
      color: { h: 0, s: 0 },
      brightness: 1,
      client: `lamp-${id}`,
    });
    // Presence goes out before anything else on connect.
    const first = watcher.messages.findIndex((m) => m.topic === presence);
    const firstState = watcher.messages.findIndex((m) => m.topic === `${base}/changed`);
    expect(first).toBeLessThan(firstState);
  });

  it("applies a command, quantised, publishes the state with its client, and writes the pins", async () => {
    const { watcher, base, driver } = await lamp();
    await watcher.publish(
      `${base}/set_config`,
      JSON.stringify({ on: true, color: { h: 0.333, s: 1 }, brightness: 0.756, client: "ui" }),
    );
    const changed = await watcher.wait(`${base}/changed`, (t) => state(t).client === "ui");
    expect(state(changed.text)).toEqual({
      on: true,
      color: { h: 0.33, s: 1 },
      brightness: 0.76,
      client: "ui",
    });
    await vi.waitFor(() => {
      const [r, g, b] = driver.duties;
      expect(g).toBeCloseTo(0.76 ** 2.2, 5);
      expect(b).toBe(0);
      expect(r).toBeGreaterThan(0);
    });
  });

  it.each([
    ["payload_too_large", Buffer.alloc(5000, 0x20)],
    ["invalid_json", Buffer.from("{not json")],
    ["invalid_json", Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
    ["invalid_json", Buffer.from("[1,2]")],
    ["invalid_field", Buffer.from('{"brightness": 1.5, "client": "ui"}')],
    ["invalid_field", Buffer.from('{"on": "yes"}')],
    ["unknown_field", Buffer.from('{"on": true, "colour": {"h": 1}}')],
  ])("rejects %s and changes nothing", async (code, payload) => {
    const { watcher, base, driver } = await lamp();
    const writes = driver.writes.length;
    const before = watcher.on(`${base}/changed`).length;
    await watcher.publish(`${base}/set_config`, payload);
    const error = state((await watcher.wait(`${base}/error`)).text);
    expect(error.error).toBe(code);
    expect(typeof error.message).toBe("string");
    expect(error).toHaveProperty("client");
    expect(watcher.on(`${base}/error`)[0]?.retain).toBe(false);
    await sleep(100);
    expect(watcher.on(`${base}/changed`).length).toBe(before);
    expect(driver.writes.length).toBe(writes);
  });

  it("names the sender in the error when it gave one", async () => {
    const { watcher, base } = await lamp();
    await watcher.publish(`${base}/set_config`, '{"brightness": -1, "client": "slider"}');
    expect(state((await watcher.wait(`${base}/error`)).text)).toMatchObject({
      error: "invalid_field",
      client: "slider",
    });
  });

  it("does nothing for a command equal to the current state", async () => {
    const { watcher, base, driver } = await lamp();
    const writes = driver.writes.length;
    await watcher.publish(`${base}/set_config`, '{"on": true, "brightness": 1, "client": "ui"}');
    await sleep(300);
    expect(watcher.on(`${base}/changed`)).toHaveLength(1);
    expect(driver.writes.length).toBe(writes);
  });

  it("drops a command that names the agent itself as its client", async () => {
    const { watcher, base, id, agent } = await lamp();
    await watcher.publish(`${base}/set_config`, JSON.stringify({ on: false, client: `lamp-${id}` }));
    await sleep(300);
    expect(agent.state?.on).toBe(true);
    expect(watcher.on(`${base}/changed`)).toHaveLength(1);
  });

  it.each([
    ["5", "MQTT 5 (No Local)"],
    ["3.1.1", "MQTT 3.1.1 (echo guard)"],
  ])(
    "with one topic for commands and state, one command gives one state, then quiet: %s",
    async (protocol) => {
      const id = `same${protocol.replaceAll(".", "")}x${process.pid}`;
      const topic = `lamp/${id}/rw`;
      const agent = track(
        await startAgent(broker.url, {
          LAMP_ID: id,
          COMMAND_TOPIC: topic,
          STATE_TOPIC: topic,
          MQTT_PROTOCOL: protocol,
        }),
      );
      const watcher = track(await Recorder.connect(broker.url, [topic]));
      await watcher.wait(topic, (t) => state(t).client === `lamp-${id}`);
      await sleep(200);
      watcher.clear();
      await watcher.publish(topic, '{"on": true, "brightness": 0.4, "client": "ui"}');
      await watcher.publish(topic, '{"on": true, "brightness": 0.6, "client": "ui"}');
      await sleep(1000);
      const states = watcher.messages.filter(
        (m) => state(m.text).client === "ui" && !("transition" in state(m.text)),
      );
      const commands = 2;
      // Two commands, and per command at most one state message: nothing ping-pongs.
      expect(watcher.messages.length - commands).toBeLessThanOrEqual(2);
      expect(states.length).toBeGreaterThanOrEqual(1);
      expect(agent.agent.state?.brightness).toBe(0.6);
      const count = watcher.messages.length;
      await sleep(500);
      expect(watcher.messages.length).toBe(count);
    },
  );

  it("subscribes with No Local on MQTT 5 and falls back cleanly on 3.1.1", async () => {
    const v5 = await lamp();
    expect(v5.logs.some((l) => l.msg === "connected to the broker" && l.protocol === "5")).toBe(
      broker.kind === "mosquitto",
    );
    const v4 = await lamp({ MQTT_PROTOCOL: "3.1.1" });
    expect(v4.logs.some((l) => l.msg === "connected to the broker" && l.protocol === "3.1.1")).toBe(true);
    await v4.watcher.publish(`${v4.base}/set_config`, '{"brightness": 0.5, "client": "ui"}');
    await v4.watcher.wait(`${v4.base}/changed`, (t) => state(t).brightness === 0.5);
  });

  it("coalesces a burst: the last command wins, the pins do not replay the burst", async () => {
    const { watcher, base, driver, agent } = await lamp();
    const writes = driver.writes.length;
    for (let i = 1; i <= 500; i++) {
      watcher.client.publish(
        `${base}/set_config`,
        JSON.stringify({ brightness: (i % 100) / 100 || 1, client: "slider" }),
        { qos: 0 },
      );
    }
    await watcher.wait(`${base}/changed`, (t) => state(t).brightness === 1 && state(t).client === "slider");
    await sleep(300);
    expect(agent.state?.brightness).toBe(1);
    expect(state(watcher.on(`${base}/changed`).at(-1)?.text ?? "{}").brightness).toBe(1);
    expect(watcher.on(`${base}/changed`).length).toBeLessThan(500);
    expect(driver.writes.length - writes).toBeLessThan(500 * 3);
    expect(driver.duties).toEqual([1, 1, 1]);
  });

  it("reports a torn state file, starts from defaults and replaces the file with a valid one", async () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-torn-")));
    const file = path.join(dir, "state.json");
    writeFileSync(file, '{"version":1,"state":{"on":tr');
    const { agent, logs } = await lamp({ STATE_FILE: file });
    expect(agent.state).toEqual({ on: true, color: { h: 0, s: 0 }, brightness: 1 });
    expect(logs.some((l) => String(l.msg).includes("corrupt"))).toBe(true);
    await vi.waitFor(() => expect(JSON.parse(readFileSync(file, "utf8")).state.on).toBe(true), {
      timeout: 5000,
    });
  });

  it("logs clearly when another client keeps taking its client id", async () => {
    const { id, logs } = await lamp({ MQTT_RECONNECT_MIN_MS: "100" });
    // A thief that reconnects as soon as it is thrown out, as a second agent with this id would (with a
    // persistent session, as an agent has).
    track(
      await Recorder.connect(broker.url, [], { clientId: `lamp-${id}`, reconnectPeriod: 100, clean: false }),
    );
    await vi.waitFor(() => expect(JSON.stringify(logs)).toMatch(/took the session over/), {
      timeout: 10_000,
    });
  });
});

describe("agent behind a link that fails", () => {
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = trackAll(await new TcpProxy(broker.port).start());
  });

  it("the broker publishes the Will (0) on an abrupt socket loss, and presence returns on reconnect", async () => {
    const { watcher, presence } = await lamp({}, proxy.url);
    watcher.clear();
    proxy.cut();
    await watcher.wait(presence, (t) => t === "0", 5000);
    await watcher.wait(presence, (t) => t === "1", 10_000);
  });

  it("goes to the last of a backlog queued while it was offline, without flashing through the rest", async () => {
    const { watcher, base, driver, agent, presence } = await lamp({}, proxy.url);
    proxy.refuse();
    proxy.cut();
    await watcher.wait(presence, (t) => t === "0", 5000);
    for (let i = 1; i <= 100; i++) {
      await watcher.publish(
        `${base}/set_config`,
        JSON.stringify({ brightness: i / 100, on: true, client: "q" }),
      );
    }
    const writes = driver.writes.length;
    watcher.clear();
    proxy.restore();
    await watcher.wait(
      `${base}/changed`,
      (t) => state(t).brightness === 1 && state(t).client === "q",
      15_000,
    );
    await sleep(300);
    expect(agent.state?.brightness).toBe(1);
    // 3 pins per write; a replayed backlog would be 100 writes.
    expect((driver.writes.length - writes) / 3).toBeLessThanOrEqual(3);
  });
});

// LAMPI's own clients publish set_config retained (a voice bridge sending its whole state). The flag
// that counts is the one the broker sets on a replay from its store, the same on both protocols.
describe.each(["5", "3.1.1"])("retained commands on MQTT %s", (protocol) => {
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = trackAll(await new TcpProxy(broker.port).start());
  });
  const env = { MQTT_PROTOCOL: protocol, MQTT_RECONNECT_MIN_MS: "50" };
  const alexa = JSON.stringify({ on: false, brightness: 0.3, client: "alexa_voice" });

  it("acts on a live command published retained", async () => {
    const { watcher, base, agent, driver } = await lamp(env);
    await watcher.publish(`${base}/set_config`, alexa, { retain: true });
    const changed = await watcher.wait(`${base}/changed`, (t) => state(t).client === "alexa_voice");
    expect(state(changed.text)).toMatchObject({ on: false, brightness: 0.3 });
    expect(agent.state?.on).toBe(false);
    await vi.waitFor(() => expect(driver.duties).toEqual([0, 0, 0]));
    expect(watcher.on(`${base}/error`)).toEqual([]);
  });

  it("ignores a stored command replayed at subscribe, naming its sender", async () => {
    const id = `stored${protocol.replaceAll(".", "")}x${process.pid}`;
    const errors = track(await Recorder.connect(broker.url, [`lamp/${id}/error`]));
    await errors.publish(`lamp/${id}/set_config`, alexa, { retain: true });
    const { agent, watcher, base } = await lamp({ ...env, LAMP_ID: id });
    const error = state((await errors.wait(`lamp/${id}/error`)).text);
    expect(error).toMatchObject({ error: "retained_command", client: "alexa_voice" });
    expect(error.message).toContain(`mosquitto_pub -h <host> -p <port> -r -n -t '${base}/set_config'`);
    await sleep(300);
    expect(agent.state?.on).toBe(true);
    expect(watcher.on(`${base}/changed`).map((m) => state(m.text).client)).toEqual([`lamp-${id}`]);
  });

  it("never lets a replay at reconnect undo a newer command", async () => {
    const { watcher, base, agent, presence } = await lamp(env, proxy.url);
    await watcher.publish(`${base}/set_config`, alexa, { retain: true });
    await watcher.wait(`${base}/changed`, (t) => state(t).client === "alexa_voice");
    await watcher.publish(`${base}/set_config`, '{"on": true, "brightness": 0.9, "client": "ui"}');
    await watcher.wait(`${base}/changed`, (t) => state(t).client === "ui");
    watcher.clear();
    proxy.cut();
    await watcher.wait(presence, (t) => t === "0", 5000);
    const replayed = await watcher.wait(`${base}/error`, () => true, 10_000);
    expect(state(replayed.text)).toMatchObject({ error: "retained_command", client: "alexa_voice" });
    await sleep(300);
    expect(agent.state).toMatchObject({ on: true, brightness: 0.9 });
    expect(watcher.on(`${base}/changed`).map((m) => state(m.text).client)).not.toContain("alexa_voice");
  });
});

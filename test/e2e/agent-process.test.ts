import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { spawnAgent } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

const trackAll = teardown("all");
const track = teardown("each");
let broker: TestBroker;
let dir: string;

beforeAll(async () => {
  broker = trackAll(await startBroker());
  dir = trackAll(mkdtempSync(path.join(tmpdir(), "lamp-e2e-")));
});

let n = 0;
function env(id: string): Record<string, string> {
  return {
    LAMP_ID: id,
    MQTT_URL: broker.url,
    GPIO_DRIVER: "mock",
    STATE_FILE: path.join(dir, `${id}.json`),
    MOCK_GPIO_TRACE: path.join(dir, `${id}.trace`),
  };
}

async function start(id: string, extra: Record<string, string> = {}) {
  const agent = track(spawnAgent({ ...env(id), ...extra }));
  const watcher = track(await Recorder.connect(broker.url, [`state/${id}`, `lamp/${id}/#`]));
  await watcher.wait(`state/${id}`, (t) => t === "1", 15_000);
  return { agent, watcher };
}

const trace = (id: string) =>
  readFileSync(path.join(dir, `${id}.trace`), "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { t: number; pin: number; duty: number });

describe("the built agent as a real process", () => {
  it("kill -9 gives presence 0 through the Will", async () => {
    const id = `e2e${process.pid}k${++n}`;
    const { agent, watcher } = await start(id);
    watcher.clear();
    agent.child.kill("SIGKILL");
    expect(await agent.exited).toBe("SIGKILL");
    await watcher.wait(`state/${id}`, (t) => t === "0", 10_000);
    const late = track(await Recorder.connect(broker.url, [`state/${id}`]));
    expect((await late.wait(`state/${id}`)).text).toBe("0");
  });

  it("logs a variable that looks like one of ours at start, and runs on", async () => {
    const id = `e2e${process.pid}u${++n}`;
    const { agent } = await start(id, { LED_PIN: "12" });
    const warning = JSON.parse(
      agent
        .output()
        .split("\n")
        .find((line) => line.includes("unknown variable")) ?? "{}",
    );
    expect(warning).toMatchObject({
      level: 40,
      msg: "unknown variable LED_PIN (environment); did you mean LED_PINS?",
    });
  });

  it("SIGTERM publishes 0, exits 0 and saves the state; a restart restores it with no flash", async () => {
    const id = `e2e${process.pid}t${++n}`;
    const first = await start(id);
    await first.watcher.publish(
      `lamp/${id}/set_config`,
      JSON.stringify({ on: true, color: { h: 0.66, s: 1 }, brightness: 0.5, client: "e2e" }),
    );
    await first.watcher.wait(`lamp/${id}/changed`, (t) => JSON.parse(t).client === "e2e");
    first.agent.child.kill("SIGTERM");
    expect(await first.agent.exited).toBe(0);
    await first.watcher.wait(`state/${id}`, (t) => t === "0");
    const saved = JSON.parse(readFileSync(path.join(dir, `${id}.json`), "utf8"));
    expect(saved.state).toEqual({ on: true, color: { h: 0.66, s: 1 }, brightness: 0.5 });

    rmSync(path.join(dir, `${id}.trace`));
    const second = await start(id);
    const restored = await second.watcher.wait(`lamp/${id}/changed`, () => true, 10_000);
    expect(JSON.parse(restored.text)).toMatchObject({ on: true, color: { h: 0.66, s: 1 }, brightness: 0.5 });
    // The very first write of each pin is the restored colour, not a default white or black.
    const writes = trace(id);
    const firstPerPin = new Map<number, number>();
    for (const w of writes) if (!firstPerPin.has(w.pin)) firstPerPin.set(w.pin, w.duty);
    expect(firstPerPin.get(13)).toBeCloseTo(0.5 ** 2.2, 5);
    expect(firstPerPin.get(26)).toBeLessThan(0.05);
    second.agent.child.kill("SIGTERM");
    expect(await second.agent.exited).toBe(0);
  });

  it("exits 2 with one line per problem for invalid configuration, before touching the broker", async () => {
    const bad = spawnAgent({
      ...env(`e2e${process.pid}c`),
      LED_PINS: "19,99",
      MQTT_KEEPALIVE: "soon",
      POWER_ON: "maybe",
    });
    expect(await bad.exited).toBe(2);
    const out = bad.output();
    expect(out).toMatch(/LED_PINS="19,99": allowed: BCM pin numbers 0 to 27/);
    expect(out).toMatch(/MQTT_KEEPALIVE="soon"/);
    expect(out).toMatch(/POWER_ON="maybe": allowed: restore, on, off/);
  });

  it("--check prints the effective configuration with the password masked and exits 0", async () => {
    // A password needs a user name: Mosquitto closes a CONNECT with a password alone, and --check says so.
    const check = spawnAgent(
      { ...env(`e2e${process.pid}ck`), MQTT_USERNAME: "lamp", MQTT_PASSWORD: "hunter2-secret" },
      ["--check"],
    );
    expect(await check.exited).toBe(0);
    const out = check.output();
    expect(out).toContain("MQTT_PASSWORD=********");
    expect(out).not.toContain("hunter2-secret");
    expect(out).toMatch(/driver: mock/);
  });

  it("reads a .env file from its working directory, the environment winning, and warns of an unknown name", async () => {
    const cwd = mkdtempSync(path.join(dir, "cwd-"));
    writeFileSync(path.join(cwd, ".env"), "LAMP_ID=fromdotenv\nPOWER_ON=off\nCOLOUR=red\n");
    const check = spawnAgent({ CWD: cwd, POWER_ON: "on", GPIO_DRIVER: "mock", MQTT_URL: broker.url }, [
      "--check",
    ]);
    expect(await check.exited).toBe(0);
    expect(check.output()).toMatch(/LAMP_ID=fromdotenv\s+# \.env/);
    expect(check.output()).toMatch(/POWER_ON=on\s+# environment/);
    expect(check.output()).toContain("effective configuration, from the environment and .env");
    expect(check.output()).toContain(
      "warning: unknown variable COLOUR (.env); see .env.example for the variables",
    );
  });

  it("refuses to start with a look-alike in its .env: one line naming it, exit 2", async () => {
    const cwd = mkdtempSync(path.join(dir, "cwd-"));
    writeFileSync(path.join(cwd, ".env"), "LED_PIN=12\n");
    const agent = spawnAgent({ CWD: cwd, GPIO_DRIVER: "mock", MQTT_URL: broker.url });
    expect(await agent.exited).toBe(2);
    expect(agent.output()).toBe(
      "lamp-agent: invalid configuration:\n  unknown variable LED_PIN (.env); did you mean LED_PINS?\n",
    );
  });

  it("keeps running with no broker, and connects when one appears", async () => {
    const id = `e2e${process.pid}nb${++n}`;
    const late = track(await startBroker());
    await late.stop();
    // A short backoff cap: on a loaded machine the default (60 s) can put the next attempt past the wait.
    const agent = track(spawnAgent({ ...env(id), MQTT_URL: late.url, MQTT_RECONNECT_MAX_MS: "2000" }));
    await new Promise((r) => setTimeout(r, 1500));
    expect(agent.child.exitCode).toBeNull();
    await late.restart();
    const watcher = track(await Recorder.connect(late.url, [`state/${id}`]));
    await watcher.wait(`state/${id}`, (t) => t === "1", 20_000);
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
  });
});

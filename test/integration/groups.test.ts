import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type AgentProcess, builtAgentExists, spawnAgent } from "../helpers/agent-process.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { ROOT } from "../helpers/process.js";

// Three lamps as real processes on one real broker (Mosquitto, or Aedes where it is missing): groups,
// names, identify and the fleet view (CONTRACT section 13).
const suite = builtAgentExists() ? describe : describe.skip;
const LAMPCTL = path.join(ROOT, "dist", "cli", "lampctl.js");
const run = promisify(execFile);

async function lampctl(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [LAMPCTL, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const state = (on: boolean, brightness: number) => ({ on, brightness });

suite("groups, names, identify and lampctl ls with three lamps", () => {
  let broker: TestBroker;
  let watcher: Recorder;
  const lamps: AgentProcess[] = [];
  const tag = `g${process.pid}`;
  const [kitchen, hall, attic] = [`${tag}k`, `${tag}h`, `${tag}a`];

  beforeAll(async () => {
    broker = await startBroker();
    watcher = await Recorder.connect(broker.url, [
      "state/+",
      "lamp/+/changed",
      "lamp/+/error",
      "lamp/+/info",
    ]);
    lamps.push(
      spawnAgent(broker.url, { LAMP_NAME: "Kitchen lamp", LAMP_GROUPS: "all,downstairs" }, { id: kitchen }),
      spawnAgent(broker.url, { LAMP_NAME: "Hall lamp", LAMP_GROUPS: "all,downstairs" }, { id: hall }),
      spawnAgent(broker.url, { LAMP_GROUPS: "all" }, { id: attic }),
    );
    for (const lamp of lamps) {
      await watcher.wait(`lamp/${lamp.id}/changed`, () => true, 15_000);
      await watcher.wait(`state/${lamp.id}`, (t) => t === "1");
    }
  });

  afterAll(async () => {
    await Promise.all(lamps.map((lamp) => lamp.stop()));
    await watcher?.end();
    await broker?.stop();
  });

  const lastState = (id: string) => JSON.parse(watcher.on(`lamp/${id}/changed`).at(-1)?.text ?? "{}");

  it("publishes each lamp's info, retained, with its name and groups", async () => {
    const late = await Recorder.connect(broker.url, [`lamp/${kitchen}/info`, `lamp/${attic}/info`]);
    try {
      const info = JSON.parse((await late.wait(`lamp/${kitchen}/info`)).text);
      expect(info).toMatchObject({
        id: kitchen,
        name: "Kitchen lamp",
        groups: ["all", "downstairs"],
        driver: "mock",
        pins: [19, 26, 13],
        board: null,
        node: process.versions.node,
        mqtt: expect.stringMatching(/^(5|3\.1\.1)$/),
        broker: broker.url,
      });
      expect(new Date(info.started_at).toISOString()).toBe(info.started_at);
      expect(late.on(`lamp/${kitchen}/info`)[0]?.retain).toBe(true);
      // Without LAMP_NAME the name is the id.
      expect(JSON.parse((await late.wait(`lamp/${attic}/info`)).text).name).toBe(attic);
    } finally {
      await late.end();
    }
  });

  it("a command on a group moves exactly its lamps, each answering on its own topic with the sender", async () => {
    watcher.clear();
    await watcher.publish(
      "lamp/group/downstairs/set_config",
      '{"on": true, "brightness": 0.3, "client": "wall"}',
      {
        qos: 1,
      },
    );
    await watcher.wait(`lamp/${kitchen}/changed`, (t) => JSON.parse(t).brightness === 0.3);
    await watcher.wait(`lamp/${hall}/changed`, (t) => JSON.parse(t).brightness === 0.3);
    expect(lastState(kitchen)).toMatchObject({ ...state(true, 0.3), client: "wall" });
    await sleep(300);
    expect(watcher.on(`lamp/${attic}/changed`)).toEqual([]);

    await watcher.publish("lamp/group/all/set_config", '{"on": false, "client": "wall"}', { qos: 1 });
    for (const id of [kitchen, hall, attic]) {
      await watcher.wait(`lamp/${id}/changed`, (t) => JSON.parse(t).on === false);
    }
    await vi.waitFor(() => {
      for (const lamp of lamps) expect([...lamp.duties().values()]).toEqual([0, 0, 0]);
    });
  });

  it("refuses a bad group command all or nothing, each lamp on its own error topic", async () => {
    watcher.clear();
    await watcher.publish(
      "lamp/group/downstairs/set_config",
      '{"on": true, "brightness": 7, "client": "wall"}',
      {
        qos: 1,
      },
    );
    for (const id of [kitchen, hall]) {
      const error = JSON.parse((await watcher.wait(`lamp/${id}/error`)).text);
      expect(error).toMatchObject({ error: "invalid_field", client: "wall" });
    }
    await sleep(300);
    expect(watcher.messages.filter((m) => m.topic.endsWith("/changed"))).toEqual([]);
  });

  it("the guard holds on group topics: a command naming a lamp itself is dropped by that lamp only", async () => {
    watcher.clear();
    await watcher.publish("lamp/group/all/set_config", `{"on": true, "client": "lamp-${hall}"}`, { qos: 1 });
    await watcher.wait(`lamp/${kitchen}/changed`, (t) => JSON.parse(t).on === true);
    await watcher.wait(`lamp/${attic}/changed`, (t) => JSON.parse(t).on === true);
    await sleep(300);
    expect(watcher.on(`lamp/${hall}/changed`)).toEqual([]);
  });

  it("identify blinks the lamp for about 5 s and brings its state back, with no state message", async () => {
    const lamp = lamps[2] as AgentProcess;
    const before = lamp.trace().length;
    watcher.clear();
    const shown = [...lamp.duties().values()];
    const result = await lampctl(["--url", broker.url, "--id", attic, "--identify"]);
    expect(result).toMatchObject({ code: 0, stdout: `asked ${attic} to blink for about 5 s\n` });
    await vi.waitFor(
      () => {
        const writes = lamp.trace().slice(before);
        // Full and off in turn (three pins a step), then the state it had.
        expect(writes.filter((w) => w.duty === 1).length).toBeGreaterThanOrEqual(3 * 4);
        expect(writes.filter((w) => w.duty === 0).length).toBeGreaterThanOrEqual(3 * 4);
        expect([...lamp.duties().values()]).toEqual(shown);
        const spread = (writes.at(-1)?.t ?? 0) - (writes[0]?.t ?? 0);
        expect(spread).toBeGreaterThan(4000);
      },
      { timeout: 10_000, interval: 250 },
    );
    expect(watcher.on(`lamp/${attic}/changed`)).toEqual([]);
  });

  it("a command during the blink wins at once", async () => {
    const lamp = lamps[1] as AgentProcess;
    await watcher.publish(`lamp/${hall}/set_config`, '{"identify": true}', { qos: 1 });
    await vi.waitFor(() => expect([...lamp.duties().values()]).toEqual([1, 1, 1]));
    await watcher.publish(`lamp/${hall}/set_config`, '{"on": true, "brightness": 0.5, "client": "ui"}', {
      qos: 1,
    });
    await vi.waitFor(() => expect([...lamp.duties().values()]).toEqual([0.5, 0.5, 0.5]));
    const settled = lamp.trace().length;
    await sleep(1200);
    expect(lamp.trace().length).toBe(settled);
  });

  it("lampctl --group says how many lamps answered", async () => {
    const result = await lampctl(["--url", broker.url, "--group", "downstairs", "--brightness", "0.6"]);
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("group downstairs: 2 of 2 online lamps answered\n");
    expect(result.code).toBe(0);
  });

  it("lampctl ls lists every lamp with its name, presence and state; --json for scripts; a stopped lamp is offline", async () => {
    await (lamps[2] as AgentProcess).stop();
    await watcher.wait(`state/${attic}`, (t) => t === "0");
    const table = await lampctl(["--url", broker.url, "ls"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+NAME\s+PRESENCE\s+POWER\s+COLOUR \(H S\)\s+BRIGHTNESS$/);
    const line = (id: string) => lines.find((l) => l.startsWith(`${id} `)) ?? "";
    expect(line(kitchen)).toMatch(
      new RegExp(`^${kitchen}\\s+Kitchen lamp\\s+online\\s+on\\s+0\\.00 0\\.00\\s+60%$`),
    );
    expect(line(attic)).toMatch(new RegExp(`^${attic}\\s+${attic}\\s+offline( since \\S+)?\\s+on\\s`));

    const json = await lampctl(["--url", broker.url, "ls", "--json"]);
    const rows = JSON.parse(json.stdout) as { id: string; name: string; presence: string }[];
    expect(
      rows.filter((row) => row.id.startsWith(tag)).map((row) => [row.id, row.name, row.presence]),
    ).toEqual([
      [attic, attic, "offline"],
      [hall, "Hall lamp", "online"],
      [kitchen, "Kitchen lamp", "online"],
    ]);
  });

  it("obeys a live retained group command, and refuses its replay after a restart without undoing newer ones", async () => {
    const group = `${tag}r`;
    const lamp = spawnAgent(broker.url, { LAMP_GROUPS: group, POWER_ON: "on" }, { id: `${tag}r` });
    try {
      await watcher.wait(`state/${lamp.id}`, (t) => t === "1", 15_000);
      // LAMPI-style clients publish set_config retained: live, it is obeyed.
      await watcher.publish(`lamp/group/${group}/set_config`, '{"brightness": 0.4, "client": "voice"}', {
        qos: 1,
        retain: true,
      });
      await watcher.wait(`lamp/${lamp.id}/changed`, (t) => JSON.parse(t).brightness === 0.4);
      await watcher.publish(`lamp/${lamp.id}/set_config`, '{"brightness": 0.9, "client": "ui"}', { qos: 1 });
      await watcher.wait(`lamp/${lamp.id}/changed`, (t) => JSON.parse(t).brightness === 0.9);
      await lamp.stop();
      watcher.clear();
      const again = spawnAgent(broker.url, { LAMP_GROUPS: group }, { id: lamp.id, dir: lamp.dir });
      try {
        const error = JSON.parse((await watcher.wait(`lamp/${lamp.id}/error`, () => true, 15_000)).text);
        expect(error).toMatchObject({ error: "retained_command", client: "voice" });
        expect(error.message).toContain(`lamp/group/${group}/set_config`);
        await watcher.wait(`lamp/${lamp.id}/changed`);
        await sleep(300);
        expect(watcher.on(`lamp/${lamp.id}/changed`).map((m) => JSON.parse(m.text).brightness)).toEqual([
          0.9,
        ]);
      } finally {
        await again.stop();
      }
    } finally {
      await lamp.stop();
      await watcher.publish(`lamp/group/${group}/set_config`, "", { qos: 1, retain: true });
    }
  });
});

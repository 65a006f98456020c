import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { spawnAgent, white } from "../helpers/agent-process.js";
import { hasNatsServer } from "../helpers/cluster.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { startNatsCluster } from "../helpers/nats-cluster.js";
import { ROOT } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

const V4 = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 } as const;
const run = promisify(execFile);

/** Runs a built script to its end, against `url`; its exit code, stdout and stderr. */
async function runBuilt(script: string, args: string[], url: string, env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, script), ...args], {
      env: { PATH: process.env.PATH ?? "", MQTT_URL: url, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// A NATS cluster with a node down refuses a new client's QoS 1 SUBSCRIBEs, but only now and then (it
// depends on where the cluster's leaders were). NATS refuses them just the same, at once and every time,
// when a session's consumers would together exceed 65535 unacknowledged messages: with max_ack_pending
// 40000 a lamp's first QoS 1 subscription (its presence topic) is granted and every other one refused,
// through the same path (`processSubs`, `cleanupFailedSub` in server/mqtt.go) that takes a filter's
// QoS 0 subscription away when QoS 1 on it is refused.
describe.skipIf(!hasNatsServer())("a NATS node that refuses a lamp QoS 1 on its command topic", () => {
  const track = teardown("each");

  it("the lamp hears every command at QoS 0 while it keeps asking for QoS 1, for 25 s; lampctl and the one-shot tools work", async () => {
    const cluster = track(await startNatsCluster({ nodes: 1, mqtt: ["max_ack_pending: 40000"] }));
    const id = `refused${process.pid}`;
    const ui = track(await Recorder.connect(cluster.url(0), [`state/${id}`], V4));
    const lamp = track(spawnAgent(cluster.mqttUrl, {}, { id }));
    await ui.wait(`state/${id}`, (t) => t === "1", 30_000);
    const heardAt = Date.now();
    // One command a second: the agent asks for QoS 1 again within its first backoff ceiling (4 s), and
    // again and again after, each refused.
    for (let n = 1; n <= 25; n++) {
      const brightness = n % 2 === 0 ? 0.3 : 0.7;
      await ui.publish(`lamp/${id}/set_config`, white(brightness, `ui${n}`), { qos: 1 });
      await expect
        .poll(() => [...lamp.duties().values()], { timeout: 3000, message: `command ${n}` })
        .toEqual([brightness, brightness, brightness]);
      await sleep(Math.max(0, heardAt + n * 1000 - Date.now()));
    }
    // It did ask again meanwhile, and was refused each time: this was no quiet broker.
    const refusedAgain = lamp.logs.filter((l) => l.msg === "QoS 1 still refused" && Number(l.time) > heardAt);
    expect(refusedAgain.length).toBeGreaterThanOrEqual(2);
    expect(lamp.logs.some((l) => l.msg === "subscribed after a refusal")).toBe(false);
    // lampctl, on the same node, lists it and commands it: it asks for no QoS 1 at all.
    const lampctl = (args: string[]) => runBuilt("dist/cli/lampctl.js", args, cluster.mqttUrl);
    const ls = await lampctl(["ls", "--json", "--timeout", "2"]);
    expect(ls.stderr).toBe("");
    expect(JSON.parse(ls.stdout)).toContainEqual(expect.objectContaining({ id, presence: "online" }));
    const set = await lampctl(["--id", id, "--brightness", "0.5"]);
    expect(set.stderr).toBe("");
    expect(JSON.parse(set.stdout)).toMatchObject({ brightness: 0.5, client: "lampctl" });
    // So do the agent's own one-shot tools: the wiring test (through the running agent), and, once the
    // lamp is stopped, --forget.
    const own = { LAMP_ID: id, GPIO_DRIVER: "mock" };
    const test = await runBuilt("dist/main.js", ["--test"], cluster.mqttUrl, own);
    expect(test.code, test.stdout + test.stderr).toBe(0);
    await lamp.stop();
    const forget = await runBuilt("dist/main.js", ["--forget"], cluster.mqttUrl, own);
    expect(forget.code, forget.stdout + forget.stderr).toBe(0);
    expect(forget.stdout).toContain(`removed lamp/${id}/changed (the lamp's last state)`);
  });
});

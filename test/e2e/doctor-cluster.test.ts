import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { spawnAgent as spawnMockAgent } from "../helpers/agent-process.js";
import { freePort, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { spawnAgent } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

/**
 * `--check` and `--test` where a fleet runs: a broker that speaks MQTT 3.1.1 only (Aedes, as the demo's
 * and the clusters' are), a cluster list with a node down, and a lamp that says what is wrong with it.
 */
const track = teardown("all");
const perTest = teardown("each");
let dir: string;
let broker: TestBroker;

/** An Aedes broker in this process: it refuses MQTT 5 with "unacceptable protocol version". */
async function startAedes(): Promise<{ url: string; close(): Promise<void> }> {
  const { Aedes } = await import("aedes");
  const aedes = await Aedes.createBroker();
  const server = net.createServer(aedes.handle);
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `mqtt://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close();
        aedes.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  dir = track(mkdtempSync(path.join(tmpdir(), "lamp-doctor-cluster-")));
  broker = track(await startBroker());
});

function run(mode: string, env: Record<string, string>) {
  const child = perTest(
    spawnAgent({ GPIO_DRIVER: "mock", STATE_FILE: path.join(dir, `${mode}.json`), ...env }, [mode]),
  );
  return child.exited.then((code) => ({ code, output: child.output() }));
}

describe("--check and --test on a 3.1.1-only broker, beside the running agent", () => {
  it("--check falls back to 3.1.1 as the agent does, and --test goes through the running agent", async () => {
    const aedes = await startAedes();
    track(() => aedes.close());
    const lamp = track(spawnMockAgent(aedes.url, {}, { id: "doc311" }));
    const watcher = track(await Recorder.connect(aedes.url, ["state/doc311"], { protocolVersion: 4 }));
    await watcher.wait("state/doc311", (t) => t === "1", 15_000);

    const checked = await run("--check", { LAMP_ID: "doc311", MQTT_URL: aedes.url });
    expect(checked.output).toContain(`broker: connected to ${aedes.url} (MQTT 3.1.1)`);
    expect(checked.output).toContain("broker: round trip on lamp/doc311/set_config: ok");
    expect(checked.output).not.toMatch(/Unacceptable protocol version|problem/i);
    expect(checked.code).toBe(0);

    const tested = await run("--test", { LAMP_ID: "doc311", MQTT_URL: aedes.url });
    expect(tested.output).toContain("the agent is running (state/doc311 = 1): testing through it over MQTT");
    expect(tested.output).not.toContain("not running");
    expect(tested.code).toBe(0);
    expect(lamp.child.exitCode).toBeNull();
  }, 60_000);
});

describe("--check on a cluster", () => {
  it("tries every node and says which answer: one down is a warning while another answers", async () => {
    const dead = `mqtt://127.0.0.1:${await freePort()}`;
    const { code, output } = await run("--check", {
      LAMP_ID: "doccluster",
      MQTT_URL: `${dead},${broker.url}`,
    });
    expect(output).toContain("warning: node 1 of 2: nothing accepts connections at");
    expect(output).toContain(`broker: connected to ${broker.url}`);
    expect(output).toMatch(/broker: subscribed to lamp\/doccluster\/set_config, granted QoS 1/);
    expect(output).toContain("broker: 1 of 2 nodes answer");
    expect(code).toBe(0);
  });

  it("no node answering is a problem, exit 1", async () => {
    const urls = [`mqtt://127.0.0.1:${await freePort()}`, `mqtt://127.0.0.1:${await freePort()}`];
    const { code, output } = await run("--check", { LAMP_ID: "doccluster", MQTT_URL: urls.join(",") });
    expect(output.match(/problem: broker: nothing accepts connections/g)).toHaveLength(2);
    expect(output).toContain("broker: 0 of 2 nodes answer");
    expect(code).toBe(1);
  });

  it("says what the running lamp reports wrong in its info (another client with its id), exit 1", async () => {
    const problem =
      "another client connected with this lamp's client id (lamp-doctwin) and took its session over";
    const writer = track(await Recorder.connect(broker.url, []));
    await writer.publish("lamp/doctwin/info", JSON.stringify({ id: "doctwin", name: "doctwin", problem }), {
      qos: 1,
      retain: true,
    });
    track(() => writer.publish("lamp/doctwin/info", "", { qos: 1, retain: true }));
    const { code, output } = await run("--check", { LAMP_ID: "doctwin", MQTT_URL: broker.url });
    expect(output).toContain(`problem: the running lamp says: ${problem}`);
    expect(code).toBe(1);
  });
});

describe("the agent puts a takeover in its info", () => {
  it("two agents with one id: the info says so, for --check and the fleet", async () => {
    const env = {
      MQTT_RECONNECT_MIN_MS: "100",
      MQTT_RECONNECT_MAX_MS: "500",
      MQTT_TAKEOVER_RETRY_MS: "2000",
    };
    const watcher = track(await Recorder.connect(broker.url, ["lamp/doctakeover/info"]));
    track(spawnMockAgent(broker.url, env, { id: "doctakeover" }));
    track(spawnMockAgent(broker.url, env, { id: "doctakeover" }));
    await vi.waitFor(
      () => expect(watcher.on("lamp/doctakeover/info").some((m) => JSON.parse(m.text).problem)).toBe(true),
      { timeout: 20_000, interval: 100 },
    );
    track(() => watcher.publish("lamp/doctakeover/info", "", { qos: 1, retain: true }));
  }, 30_000);
});

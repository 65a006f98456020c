import { type ChildProcess, execFile, spawn } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type AgentProcess, builtAgentExists, spawnAgent } from "../helpers/agent-process.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { ROOT } from "../helpers/process.js";

// A lamp that stops answering while its presence stays 1: what a NATS cluster shows when the node
// holding the lamp's connection dies with it (no Will). SIGSTOP freezes the agent; a keepalive of ten
// minutes keeps the broker from firing the Will, so presence really does stay 1.
const suite = builtAgentExists() ? describe : describe.skip;
const LAMPCTL = path.join(ROOT, "dist", "cli", "lampctl.js");
const run = promisify(execFile);

interface Row {
  id: string;
  presence: string;
  since: string | null;
  removed?: boolean;
}

suite("a silent lamp in lampctl ls", () => {
  let broker: TestBroker;
  let lamp: AgentProcess;
  let steady: AgentProcess;
  let watch: ChildProcess | undefined;
  const watched: Row[] = [];

  beforeAll(async () => {
    broker = await startBroker();
    lamp = spawnAgent(broker.url, { TELEMETRY_INTERVAL: "1", MQTT_KEEPALIVE: "600" });
    // A lamp on the default interval (60 s): three intervals do not fit in a 5 s look.
    steady = spawnAgent(broker.url, {});
    const recorder = await Recorder.connect(broker.url, [`lamp/${lamp.id}/telemetry`, `state/${steady.id}`]);
    await recorder.wait(`lamp/${lamp.id}/telemetry`, () => true, 15_000);
    await recorder.wait(`state/${steady.id}`, (t) => t === "1", 15_000);
    await recorder.end();
  });

  afterAll(async () => {
    watch?.kill("SIGTERM");
    if (lamp.child.pid) {
      try {
        process.kill(lamp.child.pid, "SIGCONT");
      } catch {}
    }
    lamp.child.kill("SIGKILL");
    await Promise.all([lamp.exited, steady.stop()]);
    await broker?.stop();
  });

  it("is shown silent (with since when) within three intervals while its presence stays 1, and online again once it talks", async () => {
    watch = spawn(process.execPath, [LAMPCTL, "--url", broker.url, "ls", "--watch", "--json"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let partial = "";
    watch.stdout?.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) if (line) watched.push(JSON.parse(line) as Row);
    });
    const latest = (id: string) => watched.filter((row) => row.id === id).at(-1);
    await vi.waitFor(() => expect(latest(lamp.id)?.presence).toBe("online"), { timeout: 10_000 });

    const frozenAt = Date.now();
    process.kill(lamp.child.pid ?? 0, "SIGSTOP");
    // Three intervals of 1 s after its last telemetry, plus the watch's one-second tick and slack.
    await vi.waitFor(() => expect(latest(lamp.id)?.presence).toBe("silent"), {
      timeout: 8_000,
      interval: 100,
    });
    const silent = latest(lamp.id);
    const since = Date.parse(silent?.since ?? "");
    // Since its last telemetry: at most one interval before it was frozen, not when lampctl noticed.
    expect(since).toBeGreaterThan(frozenAt - 1500);
    expect(since).toBeLessThanOrEqual(frozenAt + 100);
    // The other lamp keeps sending nothing for a minute yet, and is not called silent for it.
    expect(latest(steady.id)?.presence).toBe("online");

    // Presence still says 1: the broker has not fired the Will.
    const fresh = await Recorder.connect(broker.url, [`state/${lamp.id}`]);
    expect((await fresh.wait(`state/${lamp.id}`)).text).toBe("1");
    await fresh.end();

    // A one-shot look judges it too: 3 s of its interval fit in the 5 s timeout.
    const { stdout } = await run(process.execPath, [LAMPCTL, "--url", broker.url, "ls", "--json"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 20_000,
    });
    const rows = JSON.parse(stdout) as Row[];
    expect(rows.find((row) => row.id === lamp.id)).toMatchObject({ presence: "silent" });
    expect(rows.find((row) => row.id === steady.id)).toMatchObject({ presence: "online" });
    // The table says so in its presence column.
    const table = await run(process.execPath, [LAMPCTL, "--url", broker.url, "ls"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 20_000,
    });
    expect(table.stdout).toMatch(new RegExp(`^${lamp.id}\\s+${lamp.id}\\s+silent since \\S+Z\\s`, "m"));

    // `lampctl info`: one lamp's retained info and presence, what install.sh --host waits on.
    const info = await run(process.execPath, [LAMPCTL, "--url", broker.url, "--id", steady.id, "info"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 20_000,
    });
    expect(JSON.parse(info.stdout)).toMatchObject({
      id: steady.id,
      presence: "1",
      info: { id: steady.id, version: expect.any(String), telemetry_interval: 60 },
    });
    const none = await run(process.execPath, [LAMPCTL, "--url", broker.url, "--id", "nosuchlamp", "info"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 20_000,
    }).catch((error: { code: number; stderr: string }) => error);
    expect(none).toMatchObject({ code: 1 });
    expect((none as { stderr: string }).stderr).toContain(
      "no info from lamp nosuchlamp on lamp/nosuchlamp/info",
    );

    process.kill(lamp.child.pid ?? 0, "SIGCONT");
    await vi.waitFor(() => expect(latest(lamp.id)?.presence).toBe("online"), { timeout: 8_000 });
    await sleep(100);
  });
});

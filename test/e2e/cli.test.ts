import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { type AgentProcess, MAIN, ROOT, spawnAgent } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

const run = promisify(execFile);
const LAMPCTL = path.join(ROOT, "dist", "cli", "lampctl.js");

async function lampctl(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [LAMPCTL, ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      cwd: ROOT,
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("lampctl against the running agent", () => {
  let broker: TestBroker;
  let _agent: AgentProcess;
  let dir: string;
  const id = `ctl${process.pid}`;

  const track = teardown("all");

  beforeAll(async () => {
    broker = track(await startBroker());
    dir = track(mkdtempSync(path.join(tmpdir(), "lampctl-")));
    _agent = track(
      spawnAgent({
        LAMP_ID: id,
        MQTT_URL: broker.url,
        GPIO_DRIVER: "mock",
        STATE_FILE: path.join(dir, "state.json"),
      }),
    );
    const watcher = await Recorder.connect(broker.url, [`state/${id}`]);
    await watcher.wait(`state/${id}`, (t) => t === "1", 15_000);
    await watcher.end();
  });

  it("prints the state", async () => {
    const result = await lampctl(["--url", broker.url, "--id", id]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ on: true, brightness: 1 });
  });

  it("sets the lamp, naming itself lampctl, and prints the resulting state", async () => {
    const result = await lampctl([
      "--url",
      broker.url,
      "--id",
      id,
      "--hue",
      "0.5",
      "--saturation",
      "1",
      "--brightness",
      "0.25",
    ]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      on: true,
      color: { h: 0.5, s: 1 },
      brightness: 0.25,
      client: "lampctl",
    });
  });

  it("prints the state at once for a command that changes nothing", async () => {
    const result = await lampctl(["--url", broker.url, "--id", id, "--on"]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).on).toBe(true);
  });

  it("refuses a bad value itself, with exit code 2", async () => {
    const result = await lampctl(["--url", broker.url, "--id", id, "--brightness", "1.5"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("brightness must be a number from 0 to 1");
  });

  it("says so when no lamp answers", async () => {
    const result = await lampctl(["--url", broker.url, "--id", "nobody", "--timeout", "1", "--off"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no answer from the lamp/);
  });
});

describe("npm run demo", () => {
  it("starts an embedded broker and the agent, prints how to drive it, and stops on Ctrl-C", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "demo-"));
    const demo: ChildProcess = spawn(process.execPath, [path.join(ROOT, "dist", "cli", "demo.js")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", STATE_FILE: path.join(dir, "state.json"), LAMP_ID: "demotest" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    demo.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => demo.once("exit", (code) => resolve(code)));
    try {
      const deadline = Date.now() + 15_000;
      while (!/connected to the broker/.test(out) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      expect(out).toMatch(/mosquitto_pub -h 127\.0\.0\.1 -p \d+ -t lamp\/demotest\/set_config/);
      const url = /broker (mqtt:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? "";
      const result = await lampctl(["--url", url, "--id", "demotest", "--off"]);
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ on: false, client: "lampctl" });
    } finally {
      demo.kill("SIGINT");
      expect(await exited).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a command line mistake", () => {
  const node = async (script: string, args: string[], env: Record<string, string> = {}) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [script, ...args], {
        env: { PATH: process.env.PATH ?? "", ...env },
        cwd: ROOT,
        timeout: 20_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      return error as { code: number; stdout: string; stderr: string };
    }
  };

  it.each([
    ["lampctl", LAMPCTL, ["--bright", "0.5"], "lampctl: unknown option --bright; did you mean --brightness?"],
    ["lamp-agent", MAIN, ["--bogus"], "lamp-agent: unknown option --bogus"],
    ["lamp-agent", MAIN, ["--chek"], "lamp-agent: unknown option --chek; did you mean --check?"],
  ])("%s %j: one line with a did-you-mean, exit 2, no stack trace", async (_name, script, args, line) => {
    const result = await node(script, args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(line);
    expect(result.stderr).toContain("--help lists the options");
  });

  it("the demo with a bad configuration: the agent's clean message, exit 2", async () => {
    const result = await node(path.join(ROOT, "dist", "cli", "demo.js"), [], { LED_PINS: "abc" });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'lamp-agent demo: invalid configuration:\n  LED_PINS="abc": allowed: BCM pin numbers 0 to 27\n',
    );
  });
});

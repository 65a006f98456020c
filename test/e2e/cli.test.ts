import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { startAgent } from "../helpers/agent.js";
import { freePort, hasMosquitto, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { makePki } from "../helpers/pki.js";
import { type AgentProcess, MAIN, ROOT, spawnAgent } from "../helpers/process.js";
import { passwordFile, tlsListener } from "../helpers/secure-broker.js";
import { teardown } from "../helpers/teardown.js";

const run = promisify(execFile);
const LAMPCTL = path.join(ROOT, "dist", "cli", "lampctl.js");

/** Runs a built script to its end; its exit code, stdout and stderr. */
async function node(script: string, args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [script, ...args], {
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

const lampctl = (args: string[], env: Record<string, string> = {}) => node(LAMPCTL, args, env);

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

  it("warns of a variable that looks like one of the agent's, and goes on", async () => {
    const result = await lampctl(["--url", broker.url, "--id", id], { MQTT_PASWORD: "x" });
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(
      "lampctl: warning: unknown variable MQTT_PASWORD (environment); did you mean MQTT_PASSWORD?\n",
    );
    expect(JSON.parse(result.stdout)).toMatchObject({ on: true });
  });

  it("prints the state at once for a command that changes nothing", async () => {
    const result = await lampctl(["--url", broker.url, "--id", id, "--on"]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).on).toBe(true);
  });

  it("refuses a bad value itself, with exit code 2", async () => {
    const result = await lampctl(["--url", broker.url, "--id", id, "--brightness", "1.5"]);
    expect(result.code).toBe(2);
    // In the words of the option the user typed, not of the JSON field it becomes.
    expect(result.stderr).toBe("lampctl: --brightness 1.5: allowed: a number from 0 to 1\n");
  });

  it("goes on to the next node of a cluster's MQTT_URL when the first is down, for a command and for ls", async () => {
    const down = `mqtt://127.0.0.1:${await freePort()}`;
    const url = `${down},${broker.url}`;
    const set = await lampctl(["--url", url, "--id", id, "--brightness", "0.4"]);
    expect(set.stderr).toBe("");
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ brightness: 0.4, client: "lampctl" });
    const ls = await lampctl(["ls", "--timeout", "1"], { MQTT_URL: url });
    expect(ls.code).toBe(0);
    expect(ls.stdout).toContain(id);
  });

  it("passes a node that is down on the way to one that speaks MQTT 3.1.1 only (the demo's Aedes, NATS)", async () => {
    const aedes = track(await startBroker({ aedes: true }));
    const recorder = track(await Recorder.connect(aedes.url, [], { protocolVersion: 4 }));
    await recorder.publish("state/old311", "1", { retain: true, qos: 1 });
    const down = `mqtt://127.0.0.1:${await freePort()}`;
    const ls = await lampctl(["ls", "--json", "--timeout", "1"], { MQTT_URL: `${down},${aedes.url}` });
    expect(ls.stderr).toBe("");
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout)).toContainEqual(
      expect.objectContaining({ id: "old311", presence: "online" }),
    );
  });

  it("sends a command again on the next node when its node closes the connection before the PUBACK", async () => {
    // As a NATS survivor does in the seconds after a node's death (docs/fleet.md): it takes the
    // PUBLISH and closes the connection without answering.
    const marker = Buffer.from(`lamp/${id}/set_config`);
    let dropped = 0;
    const survivor = net.createServer((inbound) => {
      const outbound = net.connect(broker.port, "127.0.0.1");
      inbound.on("data", (chunk: Buffer) => {
        if (chunk.includes(marker)) {
          dropped++;
          inbound.destroy();
          outbound.destroy();
        } else outbound.write(chunk);
      });
      outbound.on("data", (chunk: Buffer) => inbound.write(chunk));
      for (const socket of [inbound, outbound]) socket.on("error", () => undefined);
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
    });
    track({ close: () => new Promise<void>((resolve) => survivor.close(() => resolve())) });
    await new Promise<void>((resolve) => survivor.listen(0, "127.0.0.1", resolve));
    const port = (survivor.address() as net.AddressInfo).port;
    const result = await lampctl([
      "--url",
      `mqtt://127.0.0.1:${port},${broker.url}`,
      "--id",
      id,
      "--brightness",
      "0.6",
    ]);
    expect(dropped).toBe(1);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ brightness: 0.6, client: "lampctl" });
  });

  it("every node of MQTT_URL down: one line that says so, with the last node's reason, exit 1", async () => {
    const ports = [await freePort(), await freePort()];
    const result = await lampctl(["--url", ports.map((p) => `mqtt://127.0.0.1:${p}`).join(","), "--id", id]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toEqual([
      `lampctl: none of the 2 nodes of MQTT_URL let us in; the last: nothing accepts connections at 127.0.0.1:${ports[1]} (ECONNREFUSED): is the broker running, and is this its port?`,
    ]);
  });

  it("says so when no lamp answers", async () => {
    const result = await lampctl(["--url", broker.url, "--id", "nobody", "--timeout", "1", "--off"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/no answer from the lamp/);
  });
});

/** The demo as a running process, its stdout collected; stopped with Ctrl-C. */
function startDemo(env: Record<string, string>) {
  const demo: ChildProcess = spawn(process.execPath, [path.join(ROOT, "dist", "cli", "demo.js")], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  demo.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => demo.once("exit", (code) => resolve(code)));
  return {
    output: () => out,
    connected: () => vi.waitFor(() => expect(out).toMatch(/connected to the broker/), { timeout: 15_000 }),
    stop: async () => {
      demo.kill("SIGINT");
      return await exited;
    },
  };
}

/** A line the demo printed, run as a user would (npx, from the clone). */
async function shell(line: string) {
  try {
    const { stdout, stderr } = await run("sh", ["-c", line], { cwd: ROOT, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("npm run demo", () => {
  const track = teardown("each");

  it("starts an embedded broker and the agent, prints how to drive it, and stops on Ctrl-C", async () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "demo-")));
    const demo = startDemo({ STATE_FILE: path.join(dir, "state.json"), LAMP_ID: "demotest" });
    try {
      await demo.connected();
      const out = demo.output();
      expect(out).toMatch(/mosquitto_pub -h 127\.0\.0\.1 -p \d+ -t lamp\/demotest\/set_config/);
      // Its own broker speaks 3.1.1 only, and the demo's agent knows it: no warning on its first screen.
      expect(out).toContain("protocol=3.1.1");
      expect(out).not.toMatch(/MQTT 5/);
      // Every lampctl line it prints works as printed, from the clone (where bare `lampctl` is not on
      // the PATH). `watch` runs until stopped: it is tried below.
      const lines = out
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line.includes("lampctl") && !line.endsWith(" watch"));
      expect(lines).toHaveLength(2);
      for (const line of lines) {
        expect(line).toMatch(/^npx lampctl --url mqtt:\/\/127\.0\.0\.1:\d+ --id demotest /);
        const result = await shell(line);
        expect(result.stderr).toBe("");
        expect(result.code).toBe(0);
      }
      const url = /broker (mqtt:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? "";
      const result = await lampctl(["--url", url, "--id", "demotest"]);
      expect(JSON.parse(result.stdout)).toMatchObject({ on: false, client: "lampctl" });
      // watch against the demo's 3.1.1-only broker: it falls back once and stays connected (it used to
      // reconnect twice after the fallback, and the broker closed the first connection a second later).
      const watcher = watching(["--url", url, "--id", "demotest"]);
      try {
        await vi.waitFor(() => expect(watcher.stdout()).toContain("lamp/demotest/changed"), {
          timeout: 10_000,
        });
        await new Promise((resolve) => setTimeout(resolve, 2500));
        expect(watcher.stderr()).toBe("");
        const shown = watcher.stdout().trim().split("\n");
        expect(shown.filter((line) => line.includes(" state/demotest "))).toHaveLength(1);
        expect(shown.filter((line) => line.includes(" lamp/demotest/changed "))).toHaveLength(1);
      } finally {
        await watcher.stop();
      }
    } finally {
      expect(await demo.stop()).toBe(0);
    }
  }, 60_000);

  it("says in one line why a second run starts as the first one left the lamp", async () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "demo-")));
    const file = path.join(dir, "state.json");
    const first = startDemo({ STATE_FILE: file, LAMP_ID: "demoagain" });
    await first.connected();
    expect(first.output()).not.toContain("last demo");
    const url = /broker (mqtt:\/\/127\.0\.0\.1:\d+)/.exec(first.output())?.[1] ?? "";
    expect((await lampctl(["--url", url, "--id", "demoagain", "--off"])).code).toBe(0);
    expect(await first.stop()).toBe(0);

    const second = startDemo({ STATE_FILE: file, LAMP_ID: "demoagain" });
    try {
      await second.connected();
      const lines = second.output().split("\n");
      expect(lines.filter((line) => line.includes("last demo"))).toEqual([
        `The lamp starts as the last demo left it (off), from ${file}; POWER_ON=on npm run demo starts it lit, deleting the file starts afresh.`,
      ]);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 60_000);

  it("--help: what it does, exit 0", async () => {
    const result = await node(path.join(ROOT, "dist", "cli", "demo.js"), ["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^npm run demo: the whole agent on a laptop/);
    expect(result.stderr).toBe("");
  });
});

describe("a command line mistake", () => {
  it.each([
    ["lampctl", LAMPCTL, ["--bright", "0.5"], "lampctl: unknown option --bright; did you mean --brightness?"],
    ["lamp-agent", MAIN, ["--bogus"], "lamp-agent: unknown option --bogus"],
    ["lamp-agent", MAIN, ["--chek"], "lamp-agent: unknown option --chek; did you mean --check?"],
    [
      "the demo",
      path.join(ROOT, "dist", "cli", "demo.js"),
      ["--bogus"],
      "lamp-agent demo: unknown option --bogus",
    ],
    [
      "the demo",
      path.join(ROOT, "dist", "cli", "demo.js"),
      ["--halp"],
      "lamp-agent demo: unknown option --halp; did you mean --help?",
    ],
    [
      "lamp-agent",
      MAIN,
      ["--test", "--check"],
      "lamp-agent: --check and --test do different things: give one",
    ],
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

/** `lampctl watch` as a running process, its output collected. */
function watching(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [LAMPCTL, "watch", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

const suite = hasMosquitto() ? describe : describe.skip;

suite("lampctl on a par with the agent", () => {
  const track = teardown("each");

  it("uses the agent's TLS options: CA, client certificate and key", async () => {
    const pki = makePki();
    track(pki.dir);
    const broker = track(
      await startBroker({
        listener: tlsListener(pki.ca, pki.server, [
          "require_certificate true",
          "use_identity_as_username true",
        ]),
      }),
    );
    const identity = pki.client("lamp-tls");
    const tls = { MQTT_CA_FILE: pki.ca, MQTT_CERT_FILE: identity.cert, MQTT_KEY_FILE: identity.key };
    const url = `mqtts://127.0.0.1:${broker.port}`;
    const lamp = track(await startAgent(url, tls));
    await vi.waitFor(() => expect(lamp.logs.some((l) => l.msg === "connected to the broker")).toBe(true), {
      timeout: 10_000,
    });
    const result = await lampctl(["--id", lamp.id, "--brightness", "0.5"], { ...tls, MQTT_URL: url });
    expect(result.stderr).toBe("");
    expect(JSON.parse(result.stdout)).toMatchObject({ brightness: 0.5, client: "lampctl" });
    expect(result.code).toBe(0);
  });

  it("never prints a password given inside --url or MQTT_URL", async () => {
    const port = await freePort();
    const byOption = await lampctl(["--url", `mqtt://bob:s3cret@127.0.0.1:${port}`, "--timeout", "1"]);
    const byEnv = await lampctl(["--timeout", "1"], { MQTT_URL: `mqtt://bob:s3cret@127.0.0.1:${port}` });
    for (const result of [byOption, byEnv]) {
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`127.0.0.1:${port}`);
      expect(result.stderr + result.stdout).not.toContain("s3cret");
    }
  });

  it("watch: a refused login exits 1 with the agent's explanation, once", async () => {
    const file = passwordFile({ bob: "right" });
    track(path.dirname(file));
    const broker = track(
      await startBroker({
        listener: ["listener {port} 127.0.0.1", "allow_anonymous false", `password_file ${file}`],
      }),
    );
    const watch = track(watching(["--url", `mqtt://bob:wrong-s3cret@127.0.0.1:${broker.port}`]));
    expect(await watch.exited).toBe(1);
    const lines = watch.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^lampctl: the broker refused the login: .*not authorized.*; check MQTT_USERNAME/,
    );
    expect(watch.stderr()).not.toContain("s3cret");
  });

  it("watch: a broker that goes away is explained once, then quiet until it is back", async () => {
    const broker = track(await startBroker());
    const watch = track(watching(["--url", broker.url, "--id", "quiet"]));
    const recorder = track(await Recorder.connect(broker.url, []));
    await recorder.publish("state/quiet", "1", { retain: true });
    await vi.waitFor(() => expect(watch.stdout()).toContain("state/quiet 1"), { timeout: 10_000 });
    await recorder.end();
    await broker.stop();
    // In the broker's place, a port that hangs up on every attempt, counting them. With a reset: a bare
    // close can reach lampctl before its CONNECT is written, and then reads as a plain close, not ECONNRESET
    // (seen under load).
    let attempts = 0;
    const hangUp = net.createServer((socket) => {
      attempts++;
      socket.resetAndDestroy();
    });
    await new Promise<void>((resolve) => hangUp.listen(broker.port, "127.0.0.1", resolve));
    await vi.waitFor(() => expect(attempts).toBeGreaterThanOrEqual(3), { timeout: 10_000 });
    await new Promise<void>((resolve) => hangUp.close(() => resolve()));
    await broker.restart();
    await vi.waitFor(() => expect(watch.stderr()).toContain("connected to"), { timeout: 10_000 });
    // One line per change of condition, none per retry (a refused attempt may come between the two
    // servers, and is a condition of its own).
    const lines = watch.stderr().trim().split("\n");
    expect(lines[0]).toBe(`lampctl: lost the connection to ${broker.url}; reconnecting`);
    expect(lines.at(-1)).toBe(`lampctl: connected to ${broker.url}`);
    expect(lines.filter((l) => l.includes("ECONNRESET"))).toHaveLength(1);
    expect(new Set(lines).size).toBe(lines.length);
    expect(watch.child.exitCode).toBeNull();
  }, 30_000);

  it("an offline lamp: its state is shown as offline since it stopped, and a command says at once it is queued", async () => {
    const broker = track(await startBroker());
    const lamp = await startAgent(broker.url, {});
    const args = ["--url", broker.url, "--id", lamp.id];
    const watcher = track(await Recorder.connect(broker.url, [`state/${lamp.id}`]));
    await watcher.wait(`state/${lamp.id}`, (t) => t === "1");
    await lamp.stop();
    await watcher.wait(`state/${lamp.id}`, (t) => t === "0");

    const shown = await lampctl(args);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ on: true, brightness: 1 });
    expect(shown.stderr).toMatch(
      new RegExp(
        `^lampctl: the lamp is offline \\(state/${lamp.id} is 0 since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)\\n$`,
      ),
    );

    // A timeout far longer than the test's: the answer must come from knowing the lamp is away.
    const queued = await lampctl([...args, "--off", "--timeout", "600"]);
    expect(queued.code).toBe(1);
    expect(queued.stderr).toMatch(/the lamp is offline .*: the command is queued on the broker/);

    // It was: the lamp, back, goes off.
    const back = track(
      await startAgent(broker.url, { LAMP_ID: lamp.id, STATE_FILE: path.join(lamp.dir, "state.json") }),
    );
    await vi.waitFor(() => expect(back.agent.state?.on).toBe(false), { timeout: 10_000 });
  }, 30_000);
});

import {
  type FSWatcher,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  watch,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { buildTree, PI5_KERNEL_612, removeTree } from "../helpers/fake-sysfs.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { spawnAgent } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

/**
 * The built agent with GPIO_DRIVER=sysfs-pwm on a fake Pi 5 tree: pwm0 and pwm1 exported before it
 * starts (a previous run), pwm2 exported by the agent itself, with this test playing the kernel for
 * `export`/`unexport` by watching those files. The duty files are the lamp.
 */
const PERIOD = 1_000_000; // PWM_FREQUENCY=1000

let broker: TestBroker;
let root: string;
let dir: string;
let chipDir: string;
const watchers: FSWatcher[] = [];
const track = teardown("all");

function channelDir(channel: number): string {
  return path.join(chipDir, `pwm${channel}`);
}

/** What the kernel does on `export`: the directory appears at once, complete. */
function createChannel(channel: number): void {
  const staging = path.join(chipDir, `.pwm${channel}.new`);
  mkdirSync(staging, { recursive: true });
  for (const [file, value] of Object.entries({ period: 0, duty_cycle: 0, enable: 0, polarity: "normal" })) {
    writeFileSync(path.join(staging, file), `${value}\n`);
  }
  renameSync(staging, channelDir(channel));
}

function playKernel(): void {
  for (const action of ["export", "unexport"] as const) {
    const file = path.join(chipDir, action);
    watchers.push(
      watch(file, () => {
        const value = readFileSync(file, "utf8").trim();
        if (!/^\d+$/.test(value)) return;
        const channel = Number(value);
        writeFileSync(file, "");
        if (action === "export") createChannel(channel);
        else rmSync(channelDir(channel), { recursive: true, force: true });
      }),
    );
  }
}

const read = (channel: number, file: string): string => {
  try {
    return readFileSync(path.join(channelDir(channel), file), "utf8").trim();
  } catch {
    return "absent";
  }
};

const duties = (): number[] => [0, 1, 2].map((channel) => Number(read(channel, "duty_cycle")));

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; duties ${duties().join(",")}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

beforeAll(async () => {
  broker = track(await startBroker());
  dir = track(mkdtempSync(path.join(tmpdir(), "lamp-e2e-pwm-")));
  root = buildTree({
    ...PI5_KERNEL_612,
    pwmChips: (PI5_KERNEL_612.pwmChips ?? []).map((chip) =>
      chip.device === "1f00098000.pwm" ? { ...chip, exported: { 0: {}, 1: {} } } : chip,
    ),
  });
  chipDir = path.join(
    root,
    "devices",
    "platform",
    "axi",
    "1000120000.pcie",
    "1f00098000.pwm",
    "pwm",
    "pwmchip1",
  );
  track(() => removeTree(root));
  playKernel();
  track(() => {
    for (const w of watchers) w.close();
  });
});

const env = (id: string): Record<string, string> => ({
  LAMP_ID: id,
  MQTT_URL: broker.url,
  GPIO_DRIVER: "sysfs-pwm",
  SYSFS_ROOT: root,
  LED_PINS: "12,13,18",
  PWM_FREQUENCY: "1000",
  GAMMA: "1",
  POWER_ON: "off",
  STATE_FILE: path.join(dir, `${id}.json`),
});

describe("the built agent on the kernel's PWM (fake Pi 5 sysfs)", () => {
  it("--check finds RP1 PWM0 by its device and maps the pins", async () => {
    const check = spawnAgent(env("e2epwmcheck"), ["--check"]);
    expect(await check.exited).toBe(0);
    expect(check.output()).toContain(
      "driver: sysfs-pwm: kernel PWM pwmchip1 (1f00098000.pwm), 12->pwm0, 13->pwm1, 18->pwm2, 1000 Hz",
    );
  });

  it("refuses pins without a PWM channel as a configuration error naming the pins that would work", async () => {
    const check = spawnAgent({ ...env("e2epwmbad"), LED_PINS: "19,26,13" }, ["--check"]);
    expect(await check.exited).toBe(2);
    expect(check.output()).toContain('LED_PINS="19,26,13": pin 26 has');
    expect(check.output()).toContain("pin 26 has no hardware PWM channel");
    expect(check.output()).toContain("pins that work: 12, 13, 18, 19");
  });

  it("commands set the duty files; SIGTERM disables the channels and unexports the one it exported", async () => {
    const id = `e2epwm${process.pid}`;
    const agent = track(spawnAgent(env(id)));
    const client = track(await Recorder.connect(broker.url, [`state/${id}`, `lamp/${id}/#`]));
    await client.wait(`state/${id}`, (t) => t === "1", 15_000);

    // Started dark (POWER_ON=off): all three running at duty 0, pwm2 exported by the agent.
    await until("three enabled channels", () => [0, 1, 2].every((c) => read(c, "enable") === "1"));
    expect([0, 1, 2].map((c) => read(c, "period"))).toEqual([String(PERIOD), String(PERIOD), String(PERIOD)]);
    expect(duties()).toEqual([0, 0, 0]);

    const set = async (command: object) => {
      await client.publish(
        `lamp/${id}/set_config`,
        JSON.stringify({ ...command, transition: 0, client: "e2e" }),
      );
    };
    await set({ on: true, color: { h: 0, s: 1 }, brightness: 1 });
    await until("red", () => duties().join() === `${PERIOD},0,0`);
    await set({ color: { h: 0.5, s: 1 }, brightness: 0.5 });
    await until("dim cyan", () => duties().join() === `0,${PERIOD / 2},${PERIOD / 2}`);
    await set({ on: false });
    await until("dark", () => duties().join() === "0,0,0");
    await set({ on: true, color: { h: 0, s: 0 } });
    await until("white at half", () => duties().join() === `${PERIOD / 2},${PERIOD / 2},${PERIOD / 2}`);

    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect([0, 1].map((c) => [read(c, "enable"), read(c, "duty_cycle")])).toEqual([
      ["0", "0"],
      ["0", "0"],
    ]);
    await until("pwm2 unexported", () => read(2, "enable") === "absent", 5000);
  });
});

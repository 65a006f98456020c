import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  watch,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import {
  buildTree,
  lampChannel,
  PI4_LAMPI_66,
  PI5_KERNEL_612,
  PI5_LAMPI_612,
  type TreeSpec,
  ZERO2_LAMPI_612,
} from "../helpers/fake-sysfs.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { spawnAgent } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

/**
 * The built agent with GPIO_DRIVER=sysfs-pwm on fake sysfs trees, this test playing the kernel for
 * `export`/`unexport` by watching those files of every chip (decoys included). The duty files are the
 * lamp.
 */
const PERIOD = 1_000_000; // PWM_FREQUENCY=1000

let broker: TestBroker;
let dir: string;
const track = teardown("all");
const perTest = teardown("each");

/** A tree and its kernel: `export` makes the channel directory appear at once, complete. */
function playedTree(spec: TreeSpec): { root: string; channelDir: (pin: number) => string } {
  const root = track(buildTree(spec));
  for (const chip of spec.pwmChips ?? []) {
    const chipDir = realpathSync(path.join(root, "class", "pwm", `pwmchip${chip.index}`));
    for (const action of ["export", "unexport"] as const) {
      const file = path.join(chipDir, action);
      const watcher = watch(file, () => {
        const value = readFileSync(file, "utf8").trim();
        if (!/^\d+$/.test(value)) return;
        writeFileSync(file, "");
        const channel = path.join(chipDir, `pwm${value}`);
        if (action === "unexport") return rmSync(channel, { recursive: true, force: true });
        const staging = path.join(chipDir, `.pwm${value}.new`);
        mkdirSync(staging, { recursive: true });
        for (const [name, v] of Object.entries({
          period: 0,
          duty_cycle: 0,
          enable: 0,
          polarity: "normal",
        })) {
          writeFileSync(path.join(staging, name), `${v}\n`);
        }
        renameSync(staging, channel);
      });
      track(() => watcher.close());
    }
  }
  return {
    root,
    channelDir(pin) {
      const at = lampChannel(spec, pin);
      if (!at) throw new Error(`pin ${pin} has no channel in this tree`);
      return path.join(root, "class", "pwm", `pwmchip${at.chip.index}`, `pwm${at.channel}`);
    },
  };
}

const readIn = (channelDir: string, file: string): string => {
  try {
    return readFileSync(path.join(channelDir, file), "utf8").trim();
  } catch {
    return "absent";
  }
};

async function until(
  what: string,
  check: () => boolean,
  detail: () => string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${detail()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

beforeAll(async () => {
  broker = track(await startBroker());
  dir = track(mkdtempSync(path.join(tmpdir(), "lamp-e2e-pwm-")));
});

const env = (id: string, root: string, pins: string): Record<string, string> => ({
  LAMP_ID: id,
  MQTT_URL: broker.url,
  GPIO_DRIVER: "sysfs-pwm",
  SYSFS_ROOT: root,
  LED_PINS: pins,
  PWM_FREQUENCY: "1000",
  GAMMA: "1",
  POWER_ON: "off",
  HA_DISCOVERY: "false",
  STATE_FILE: path.join(dir, `${id}.json`),
});

/**
 * Runs the agent on `pins` and drives it through red, dim cyan, dark and half white, checking the duty
 * file of each pin's channel; then SIGTERM must leave every channel it exported unexported.
 */
async function lightsUp(
  id: string,
  root: string,
  pins: readonly number[],
  channelDir: (pin: number) => string,
) {
  const dirs = pins.map(channelDir);
  const duties = () => dirs.map((d) => readIn(d, "duty_cycle")).join();
  const agent = perTest(spawnAgent(env(id, root, pins.join(","))));
  const client = perTest(await Recorder.connect(broker.url, [`state/${id}`, `lamp/${id}/#`]));
  await client.wait(`state/${id}`, (t) => t === "1", 15_000);
  await until("enabled channels", () => dirs.every((d) => readIn(d, "enable") === "1"), duties);
  expect(dirs.map((d) => readIn(d, "period"))).toEqual(dirs.map(() => String(PERIOD)));
  expect(duties()).toBe("0,0,0");
  const set = (command: object) =>
    client.publish(`lamp/${id}/set_config`, JSON.stringify({ ...command, transition: 0, client: "e2e" }));
  await set({ on: true, color: { h: 0, s: 1 }, brightness: 1 });
  await until("red", () => duties() === `${PERIOD},0,0`, duties);
  await set({ color: { h: 0.5, s: 1 }, brightness: 0.5 });
  await until("dim cyan", () => duties() === `0,${PERIOD / 2},${PERIOD / 2}`, duties);
  await set({ on: false });
  await until("dark", () => duties() === "0,0,0", duties);
  await set({ on: true, color: { h: 0, s: 0 } });
  await until("white at half", () => duties() === `${PERIOD / 2},${PERIOD / 2},${PERIOD / 2}`, duties);
  return agent;
}

describe("the built agent on the kernel's PWM, LAMPI wiring (LED_PINS=19,26,13)", () => {
  for (const [label, spec] of [
    ["Pi 5 on 6.12: RP1 PWM0 for 19 and 13, pwm-pio for 26", PI5_LAMPI_612],
    ["Pi 4 on 6.6.62: SoC PWM for 19, pwm-gpio for 26 and 13", PI4_LAMPI_66],
    ["Pi Zero 2 W on 6.12: SoC PWM for 13, pwm-gpio for 19 and 26", ZERO2_LAMPI_612],
  ] as const) {
    it(label, async () => {
      const tree = playedTree(spec);
      const id = `e2elampi${path.basename(tree.root).slice(-6)}x${process.pid}`;
      const agent = await lightsUp(id, tree.root, [19, 26, 13], tree.channelDir);
      agent.child.kill("SIGTERM");
      expect(await agent.exited).toBe(0);
      for (const pin of [19, 26, 13]) {
        await until(
          `pin ${pin}'s channel unexported`,
          () => readIn(tree.channelDir(pin), "enable") === "absent",
          () => "",
          5000,
        );
      }
    });
  }
});

describe("the built agent on the kernel's PWM (fake Pi 5 sysfs, RP1 PWM0 only)", () => {
  // pwm0 and pwm1 exported before it starts (a previous run), pwm2 exported by the agent itself.
  const spec: TreeSpec = {
    ...PI5_KERNEL_612,
    pwmChips: (PI5_KERNEL_612.pwmChips ?? []).map((chip) =>
      chip.device === "1f00098000.pwm" ? { ...chip, exported: { 0: {}, 1: {} } } : chip,
    ),
  };

  it("--check finds RP1 PWM0 by its device and maps the pins", async () => {
    const tree = playedTree(spec);
    const check = perTest(spawnAgent(env("e2epwmcheck", tree.root, "12,13,18"), ["--check"]));
    expect(await check.exited).toBe(0);
    expect(check.output()).toContain(
      "driver: sysfs-pwm: kernel PWM pwmchip1 (1f00098000.pwm), 12->pwm0, 13->pwm1, 18->pwm2, 1000 Hz",
    );
  });

  it("refuses to start on a pin without a channel, naming the config.txt line that gives it one", async () => {
    const tree = playedTree(spec);
    const agent = perTest(spawnAgent(env("e2epwmbad", tree.root, "19,26,13")));
    expect(await agent.exited).toBe(1);
    expect(agent.output()).toContain("no PWM channel for pin 26 (no PWM chip drives it)");
    expect(agent.output()).toContain("dtoverlay=pwm-pio,gpio=26");
  });

  it("commands set the duty files; SIGTERM disables the channels and unexports the one it exported", async () => {
    const tree = playedTree(spec);
    const agent = await lightsUp(`e2epwm${process.pid}`, tree.root, [12, 13, 18], tree.channelDir);
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(
      [12, 13].map((pin) => [
        readIn(tree.channelDir(pin), "enable"),
        readIn(tree.channelDir(pin), "duty_cycle"),
      ]),
    ).toEqual([
      ["0", "0"],
      ["0", "0"],
    ]);
    await until(
      "pwm2 unexported",
      () => readIn(tree.channelDir(18), "enable") === "absent",
      () => "",
      5000,
    );
  });
});

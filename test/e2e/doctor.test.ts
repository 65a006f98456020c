import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { spawnAgent as spawnMockAgent } from "../helpers/agent-process.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import {
  buildTree,
  PI3_MODEL,
  PI4_BARE_66,
  PI4_LAMPI_66,
  PI5_BARE_612,
  PI5_LAMPI_612,
  type TreeSpec,
  ZERO2_BARE_612,
} from "../helpers/fake-sysfs.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { ROOT, spawnAgent } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

/** The setup doctor (`--check`) and the wiring test (`--test`) as a user runs them: the built agent. */
const track = teardown("all");
const perTest = teardown("each");
let broker: TestBroker;
let dir: string;

beforeAll(async () => {
  broker = track(await startBroker());
  dir = track(mkdtempSync(path.join(tmpdir(), "lamp-e2e-doctor-")));
});

const env = (spec: TreeSpec, extra: Record<string, string> = {}): Record<string, string> => ({
  LAMP_ID: `doctor${process.pid}`,
  MQTT_URL: broker.url,
  GPIO_DRIVER: "sysfs-pwm",
  SYSFS_ROOT: track(buildTree(spec)),
  LED_PINS: "19,26,13",
  STATE_FILE: path.join(dir, "state.json"),
  ...extra,
});

/** The config.txt lines hardware/README.md gives under `<!-- recipe: name -->`. */
function recipe(name: string): string[] {
  const readme = readFileSync(path.join(ROOT, "hardware", "README.md"), "utf8");
  const block = new RegExp(`<!-- recipe: ${name} -->\\s*\`\`\`ini\\n([^\`]*)\`\`\``).exec(readme)?.[1];
  if (!block) throw new Error(`hardware/README.md has no recipe ${name}`);
  return block.trim().split("\n");
}

/** The indented config.txt lines `--check` printed under "add to /boot/firmware/config.txt". */
function printedLines(output: string): string[] {
  const after = output.split("add to /boot/firmware/config.txt, then reboot")[1] ?? "";
  return after
    .split("\n")
    .slice(1)
    .filter((line) => line.startsWith("    "))
    .map((line) => line.trim());
}

describe("lamp-agent --check, LAMPI wiring (19, 26, 13) on sysfs-pwm", () => {
  for (const [board, spec, name] of [
    ["Pi 5 on 6.12", PI5_BARE_612, "pi5"],
    ["Pi 4 on 6.6.62", PI4_BARE_66, "pi4"],
    ["Pi Zero 2 W on 6.12", ZERO2_BARE_612, "pi4"],
    ["Pi 3 on 6.12", { ...ZERO2_BARE_612, model: PI3_MODEL }, "pi4"],
  ] as const) {
    it(`${board} without the overlays: exits 1 and prints hardware/README.md's recipe`, async () => {
      const check = perTest(spawnAgent(env(spec), ["--check"]));
      expect(await check.exited).toBe(1);
      const output = check.output();
      for (const pin of [19, 26, 13]) expect(output).toContain(`  pin ${pin}: no PWM channel`);
      expect(printedLines(output)).toEqual(recipe(name));
      // A bare Pi 4 also needs the audio off, which is in the recipe; the Pi 5 has no analogue audio.
      expect(output.includes("dtparam=audio=off")).toBe(name === "pi4");
    });
  }

  it("with the overlays: each pin's chip, channel and kind, and exit 0", async () => {
    const pi5 = perTest(spawnAgent(env(PI5_LAMPI_612), ["--check"]));
    expect(await pi5.exited).toBe(0);
    expect(pi5.output()).toContain(
      [
        "  pin 19: pwmchip2 channel 3 (1f00098000.pwm, soc, hardware PWM)",
        "  pin 26: pwmchip3 channel 0 (pwm_pio@1a, pwm-pio, hardware PWM)",
        "  pin 13: pwmchip2 channel 1 (1f00098000.pwm, soc, hardware PWM)",
      ].join("\n"),
    );
    const pi4 = perTest(spawnAgent(env(PI4_LAMPI_66), ["--check"]));
    expect(await pi4.exited).toBe(0);
    expect(pi4.output()).toContain(
      "  pin 26: pwmchip2 channel 0 (pwm_gpio@1a, pwm-gpio, software PWM (hrtimer))",
    );
    expect(pi4.output()).toContain("  dtparam=audio=off: needed");
    expect(pi4.output()).toContain("ok: the agent can run with this configuration");
  });

  it("auto on a Pi says why it took what it took", async () => {
    const check = perTest(spawnAgent(env(PI5_LAMPI_612, { GPIO_DRIVER: "auto" }), ["--check"]));
    expect(await check.exited).toBe(0);
    expect(check.output()).toContain("driver: sysfs-pwm: kernel PWM pwmchip2 (1f00098000.pwm), 19->pwm3");
  });

  it("the agent refuses to start with the same lines", async () => {
    const agent = perTest(spawnAgent(env(PI4_BARE_66)));
    expect(await agent.exited).toBe(1);
    expect(agent.output()).toContain(recipe("pi4").join("; "));
  });
});

describe("lamp-agent --test", () => {
  const mockEnv = (id: string, trace: string): Record<string, string> => ({
    LAMP_ID: id,
    MQTT_URL: broker.url,
    GPIO_DRIVER: "mock",
    MOCK_GPIO_TRACE: trace,
    GAMMA: "1",
    STATE_FILE: path.join(dir, `${id}-test.json`),
  });
  const traceOf = (file: string) =>
    readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { pin: number; duty: number });
  /** The duties after each write, one triple per moment, [19, 26, 13]. */
  const moments = (writes: { pin: number; duty: number }[], from: readonly number[]) => {
    const now = new Map([19, 26, 13].map((pin, i) => [pin, from[i] ?? 0]));
    const seen: number[][] = [];
    for (const w of writes) {
      now.set(w.pin, w.duty);
      seen.push([19, 26, 13].map((pin) => Math.round((now.get(pin) ?? 0) * 100) / 100));
    }
    return seen;
  };

  it("without a running agent: drives the pins itself, red, green, blue, white, then releases them", async () => {
    const trace = path.join(dir, "direct.jsonl");
    const test = perTest(
      spawnAgent({ ...mockEnv(`direct${process.pid}`, trace), MQTT_URL: "mqtt://127.0.0.1:1" }, ["--test"]),
    );
    expect(await test.exited).toBe(0);
    expect(test.output()).toContain("the agent is not running: testing the pins with the mock driver");
    expect(test.output()).toMatch(
      /red \(pin 19\)\ngreen \(pin 26\)\nblue \(pin 13\)\nwhite \(pins 19, 26, 13\)\n/,
    );
    const seen = moments(traceOf(trace), [0, 0, 0]);
    const distinct = seen.filter((m, i) => i === 0 || m.join() !== seen[i - 1]?.join());
    expect(distinct.filter((m) => ["1,0,0", "0,1,0", "0,0,1", "1,1,1"].includes(m.join()))).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
      [1, 1, 1],
    ]);
  });

  it("with the agent running: asks it over MQTT, then puts its previous state back", async () => {
    const id = `viamqtt${process.pid}`;
    const agent = perTest(spawnMockAgent(broker.url, { POWER_ON: "on" }, { id }));
    const watcher = perTest(await Recorder.connect(broker.url, [`state/${id}`, `lamp/${id}/changed`]));
    await watcher.wait(`state/${id}`, (t) => t === "1", 15_000);
    const previous = { on: true, color: { h: 0.5, s: 0.4 }, brightness: 0.3 };
    await watcher.client.publishAsync(
      `lamp/${id}/set_config`,
      JSON.stringify({ ...previous, transition: 0, client: "setup" }),
      { qos: 1 },
    );
    await watcher.wait(`lamp/${id}/changed`, (t) => JSON.parse(t).client === "setup");
    // On the pins too: a command this soon after the connect is held with any that follow within 100 ms
    // (control.ts, the reconnect backlog), and the test's red could otherwise come first.
    const shown = () => [...agent.duties().values()].map((d) => Math.round(d * 100) / 100);
    await vi.waitFor(() => expect(shown()).toEqual([0.18, 0.3, 0.3]), { timeout: 5000 });
    const before = agent.trace().length;

    const test = perTest(spawnAgent(mockEnv(id, path.join(dir, "unused.jsonl")), ["--test"]));
    expect(await test.exited).toBe(0);
    expect(test.output()).toContain(`the agent is running (state/${id} = 1): testing through it over MQTT`);
    expect(test.output()).toContain(`restored: ${JSON.stringify(previous)}`);

    const writes = agent.trace().slice(before);
    const last = agent.duties();
    const seen = moments(writes, [...last.values()]);
    const dominant = seen.map((m) => m.map((d) => (d > 0.9 ? 1 : d < 0.05 ? 0 : -1)).join());
    const order = dominant.filter(
      (m, i) => ["1,0,0", "0,1,0", "0,0,1", "1,1,1"].includes(m) && m !== dominant[i - 1],
    );
    expect(order).toEqual(["1,0,0", "0,1,0", "0,0,1", "1,1,1"]);
    const restored = await watcher.wait(`lamp/${id}/changed`, (t) => {
      const s = JSON.parse(t);
      return s.client === "lamp-agent --test" && s.brightness === 0.3;
    });
    expect(JSON.parse(restored.text)).toMatchObject(previous);
    await agent.stop();
  });
});

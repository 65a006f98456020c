import { spawn } from "node:child_process";
import nunjucks from "nunjucks";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../src/config.js";
import {
  discoveryConfig,
  discoveryMessages,
  HA_CLIENT,
  SENSORS,
  sensorConfig,
} from "../../src/features/home-assistant.js";
import { parseCommand } from "../../src/lamp/command.js";
import { VERSION } from "../../src/version.js";
import { startAgent } from "../helpers/agent.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { MAIN } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

// Jinja as Home Assistant runs it, as far as these templates go: nunjucks is Jinja-compatible for the
// constructs used (set, if/else expressions, `is defined`, round, int, list literals and indexing).
const jinja = new nunjucks.Environment(null, { autoescape: false, throwOnUndefined: false });
const render = (template: unknown, variables: Record<string, unknown>) =>
  jinja.renderString(String(template), variables).trim();

function configFor(env: Record<string, string> = {}) {
  return loadConfig({ dotenv: false, env: { LAMP_ID: "hall", GPIO_DRIVER: "mock", ...env } }).config;
}

/** What Home Assistant does with red/green/blue it reads back: colorsys.rgb_to_hsv, in degrees and percent. */
function rgbToHs(r: number, g: number, b: number): [number, number] {
  const max = Math.max(r, g, b) / 255;
  const min = Math.min(r, g, b) / 255;
  const [rf, gf, bf] = [r / 255, g / 255, b / 255];
  if (max === 0) return [0, 0];
  const s = (max - min) / max;
  if (max === min) return [0, s * 100];
  const d = max - min;
  let h = max === rf ? (gf - bf) / d : max === gf ? 2 + (bf - rf) / d : 4 + (rf - gf) / d;
  h = (h / 6 + 1) % 1;
  return [h * 360, s * 100];
}

/** The variables Home Assistant passes to command_on_template for a turn_on (template schema). */
function haTurnOn(call: { brightness?: number; hs?: [number, number]; transition?: number }) {
  const values: Record<string, unknown> = { state: true };
  if (call.brightness !== undefined) values.brightness = call.brightness;
  if (call.hs) {
    // With a brightness template configured, HA computes red/green/blue at full brightness.
    values.hue = call.hs[0];
    values.sat = call.hs[1];
  }
  if (call.transition !== undefined) values.transition = call.transition;
  return values;
}

/** What Home Assistant shows for a state message, through the discovery config's templates. */
function haReads(config: Record<string, unknown>, payload: string) {
  const value_json = JSON.parse(payload);
  const vars = { value_json, value: payload };
  const seen: { state: string; brightness: number; hs?: [number, number] } = {
    state: render(config.state_template, vars),
    brightness: Number.parseInt(render(config.brightness_template, vars), 10),
  };
  if (config.red_template) {
    const [r, g, b] = ["red_template", "green_template", "blue_template"].map((k) =>
      Number.parseInt(render(config[k], vars), 10),
    ) as [number, number, number];
    for (const c of [r, g, b]) {
      expect(c).toBeGreaterThanOrEqual(0);
      expect(c).toBeLessThanOrEqual(255);
    }
    seen.hs = rgbToHs(r, g, b);
  }
  return seen;
}

describe("Home Assistant discovery payload", () => {
  it("RGB lamp: template schema, availability on the presence topic, device block, unique_id", () => {
    const config = discoveryConfig(configFor());
    expect(config).toMatchObject({
      schema: "template",
      name: null,
      unique_id: "lamp-agent-hall",
      command_topic: "lamp/hall/set_config",
      state_topic: "lamp/hall/changed",
      availability: [{ topic: "state/hall", payload_available: "1", payload_not_available: "0" }],
      qos: 1,
      retain: false,
      optimistic: false,
      device: {
        identifiers: ["lamp-agent-hall"],
        name: "Lamp hall",
        manufacturer: "lamp-agent",
        model: "RGB LED lamp",
        sw_version: VERSION,
      },
      origin: { name: "lamp-agent", sw_version: VERSION },
    });
    expect(Object.keys(config).sort()).toEqual(
      [
        "availability",
        "blue_template",
        "brightness_template",
        "command_off_template",
        "command_on_template",
        "command_topic",
        "device",
        "green_template",
        "name",
        "optimistic",
        "origin",
        "qos",
        "red_template",
        "retain",
        "schema",
        "state_template",
        "state_topic",
        "unique_id",
      ].sort(),
    );
  });

  it("mono lamp (one pin): brightness only, no colour", () => {
    const config = discoveryConfig(configFor({ LED_PINS: "18" }));
    expect(config).not.toHaveProperty("red_template");
    expect(config).not.toHaveProperty("green_template");
    expect(config).not.toHaveProperty("blue_template");
    expect(config).toMatchObject({
      device: { model: "Dimmable LED lamp" },
      brightness_template: expect.any(String),
    });
    const command = render(config.command_on_template, { state: true, brightness: 51, hue: 120, sat: 100 });
    expect(parseCommand(Buffer.from(command))).toEqual({ on: true, brightness: 0.2, client: HA_CLIENT });
  });

  it("follows custom topics and the discovery prefix", () => {
    const config = discoveryConfig(
      configFor({
        COMMAND_TOPIC: "house/hall/cmd",
        STATE_TOPIC: "house/hall/state",
        PRESENCE_TOPIC: "alive/hall",
      }),
    );
    expect(config).toMatchObject({
      command_topic: "house/hall/cmd",
      state_topic: "house/hall/state",
      availability: [{ topic: "alive/hall" }],
    });
  });
});

describe("the templates, rendered as Home Assistant renders them", () => {
  const config = discoveryConfig(configFor());
  const command = (values: Record<string, unknown>, off = false) =>
    parseCommand(Buffer.from(render(off ? config.command_off_template : config.command_on_template, values)));

  it('turn_on with brightness 128 and hs (120, 100) (JSON schema: {"state":"ON","brightness":128,"color":{"h":120,"s":100}})', () => {
    expect(command(haTurnOn({ brightness: 128, hs: [120, 100] }))).toEqual({
      on: true,
      brightness: 0.5,
      color: { h: 0.33, s: 1 },
      client: HA_CLIENT,
    });
  });

  it("plain turn_on and turn_off carry only what was asked, always with the client", () => {
    expect(command({ state: true })).toEqual({ on: true, client: HA_CLIENT });
    expect(command({ state: false }, true)).toEqual({ on: false, client: HA_CLIENT });
    expect(command({ state: false, transition: 2 }, true)).toEqual({
      on: false,
      transition: 2,
      client: HA_CLIENT,
    });
  });

  it("clamps a transition longer than the agent accepts instead of having the command refused", () => {
    expect(command(haTurnOn({ brightness: 255, transition: 5000 }))).toEqual({
      on: true,
      brightness: 1,
      transition: 3600,
      client: HA_CLIENT,
    });
    expect(command(haTurnOn({ transition: 0.5 }))).toEqual({ on: true, transition: 0.5, client: HA_CLIENT });
  });

  it("extreme values Home Assistant can send stay within the agent's ranges", () => {
    for (const [brightness, hue, sat] of [
      [1, 0, 0],
      [255, 360, 100],
      [3, 359.9, 0.1],
    ] as const) {
      const parsed = command(haTurnOn({ brightness, hs: [hue, sat] }));
      expect(parsed.brightness).toBeGreaterThanOrEqual(0);
      expect(parsed.brightness).toBeLessThanOrEqual(1);
      expect(parsed.color?.h).toBeLessThanOrEqual(1);
    }
  });

  it("state: on/off, brightness 0..255, colour back to the same hue and saturation", () => {
    expect(haReads(config, '{"on":true,"color":{"h":0.33,"s":1},"brightness":0.5,"client":"x"}')).toEqual({
      state: "on",
      brightness: 128,
      hs: [expect.closeTo(118.8, 1), 100],
    });
    expect(haReads(config, '{"on":false,"color":{"h":0,"s":0},"brightness":1,"client":null}')).toEqual({
      state: "off",
      brightness: 255,
      hs: [0, 0],
    });
  });

  it("round trip: every brightness step survives lamp -> HA -> lamp exactly", () => {
    for (let step = 0; step <= 100; step++) {
      const brightness = step / 100;
      const seen = haReads(
        config,
        JSON.stringify({ on: true, color: { h: 0, s: 0 }, brightness, client: null }),
      );
      expect(command(haTurnOn({ brightness: seen.brightness })).brightness).toBe(brightness);
    }
  });

  it("round trip: hue and saturation come back within one step (8-bit RGB in between)", () => {
    let worst = 0;
    for (let h = 0; h <= 100; h += 1) {
      for (const s of [0.2, 0.5, 0.8, 1]) {
        const state = JSON.stringify({ on: true, color: { h: h / 100, s }, brightness: 1, client: null });
        const seen = haReads(config, state);
        const back = command(haTurnOn({ hs: seen.hs as [number, number] })).color ?? {};
        const dh = Math.abs((back.h ?? -1) - h / 100);
        worst = Math.max(worst, Math.min(dh, 1 - dh), Math.abs((back.s ?? -1) - s));
      }
    }
    expect(worst).toBeLessThanOrEqual(0.0101);
  });
});

describe("the diagnostic sensors", () => {
  const byKey = (config: ReturnType<typeof configFor>) =>
    Object.fromEntries(SENSORS.map((sensor) => [sensor.key, sensorConfig(config, sensor)]));

  it("uptime, CPU temperature, Wi-Fi signal and version, diagnostic, on the light's device", () => {
    const config = configFor({ TELEMETRY_INTERVAL: "60" });
    const sensors = byKey(config);
    const light = discoveryConfig(config);
    expect(Object.keys(sensors)).toEqual(["uptime", "cpu_temperature", "wifi_signal", "version"]);
    for (const [key, sensor] of Object.entries(sensors)) {
      expect(sensor).toMatchObject({
        unique_id: `lamp-agent-hall-${key}`,
        entity_category: "diagnostic",
        availability: [{ topic: "state/hall", payload_available: "1", payload_not_available: "0" }],
      });
      // One device in Home Assistant: the same block, hence the same identifiers, as the light's.
      expect(sensor.device).toEqual(light.device);
    }
    expect(sensors.uptime).toMatchObject({
      state_topic: "lamp/hall/telemetry",
      device_class: "duration",
      unit_of_measurement: "s",
      expire_after: 180,
    });
    expect(sensors.cpu_temperature).toMatchObject({
      state_topic: "lamp/hall/telemetry",
      device_class: "temperature",
      unit_of_measurement: "°C",
      state_class: "measurement",
      expire_after: 180,
    });
    expect(sensors.wifi_signal).toMatchObject({
      state_topic: "lamp/hall/telemetry",
      device_class: "signal_strength",
      unit_of_measurement: "dBm",
      state_class: "measurement",
      expire_after: 180,
    });
    expect(sensors.version).toMatchObject({ state_topic: "lamp/hall/info" });
    expect(sensors.version).not.toHaveProperty("expire_after");
    expect(sensors.version).not.toHaveProperty("device_class");
  });

  it("templates: a figure as it is, a null as None (Home Assistant's unknown), never a made-up 0", () => {
    const sensors = byKey(configFor());
    const telemetry = {
      uptime_s: 3725,
      reconnects: 1,
      rss_mib: 47.3,
      cpu_temp_c: 48.3,
      wifi_rssi_dbm: -61,
      load1: 0.12,
    };
    const read = (key: string, value_json: unknown) =>
      render(sensors[key]?.value_template, { value_json, value: JSON.stringify(value_json) });
    expect(read("uptime", telemetry)).toBe("3725");
    expect(read("cpu_temperature", telemetry)).toBe("48.3");
    expect(read("wifi_signal", telemetry)).toBe("-61");
    expect(read("cpu_temperature", { ...telemetry, cpu_temp_c: 0 })).toBe("0");
    expect(read("cpu_temperature", { ...telemetry, cpu_temp_c: null })).toBe("None");
    expect(read("wifi_signal", { ...telemetry, wifi_rssi_dbm: null })).toBe("None");
    expect(read("version", { id: "hall", version: "1.2.3" })).toBe("1.2.3");
  });

  it("expire_after follows TELEMETRY_INTERVAL; with 0 the telemetry sensors are removed, the version stays", () => {
    expect(byKey(configFor({ TELEMETRY_INTERVAL: "5" })).uptime?.expire_after).toBe(15);
    const messages = discoveryMessages(configFor({ TELEMETRY_INTERVAL: "0" }));
    const payload = (topic: string) => messages.find((m) => m.topic === topic)?.payload;
    expect(payload("homeassistant/sensor/hall/uptime/config")).toBe("");
    expect(payload("homeassistant/sensor/hall/cpu_temperature/config")).toBe("");
    expect(payload("homeassistant/sensor/hall/wifi_signal/config")).toBe("");
    expect(JSON.parse(payload("homeassistant/sensor/hall/version/config") ?? "{}")).toMatchObject({
      unique_id: "lamp-agent-hall-version",
    });
    expect(JSON.parse(payload("homeassistant/light/hall/config") ?? "{}")).toMatchObject({
      unique_id: "lamp-agent-hall",
    });
  });
});

describe("Home Assistant with the agent on a real broker", () => {
  const trackAll = teardown("all");
  const track = teardown("each");
  let broker: TestBroker;
  beforeAll(async () => {
    broker = trackAll(await startBroker());
  });

  async function lampWithHa(env: Record<string, string> = {}) {
    const agent = track(await startAgent(broker.url, env));
    const topic = `homeassistant/light/${agent.id}/config`;
    const watcher = track(
      await Recorder.connect(broker.url, [topic, `lamp/${agent.id}/changed`, `state/${agent.id}`]),
    );
    return { ...agent, topic, watcher };
  }

  it("publishes the config retained, again when HA says online, and HA's commands drive the lamp", async () => {
    const { watcher, topic, agent, id } = await lampWithHa();
    const published = await watcher.wait(topic);
    expect(JSON.parse(published.text)).toEqual(discoveryConfig(agent.config));
    // A late subscriber (HA starting after the lamp) gets it retained.
    const late = track(await Recorder.connect(broker.url, [topic]));
    expect((await late.wait(topic)).retain).toBe(true);

    const again = watcher.next(topic);
    await watcher.publish("homeassistant/status", "online");
    expect(JSON.parse((await again).text)).toEqual(discoveryConfig(agent.config));
    // Anything else on the status topic is not a reason to republish.
    const count = watcher.on(topic).length;
    await watcher.publish("homeassistant/status", "offline");
    await sleep(200);
    expect(watcher.on(topic)).toHaveLength(count);

    // Exactly what HA would publish for turn_on(brightness=128, hs_color=(120, 100)).
    const config = JSON.parse(published.text) as Record<string, unknown>;
    await watcher.publish(
      String(config.command_topic),
      render(config.command_on_template, haTurnOn({ brightness: 128, hs: [120, 100] })),
    );
    const changed = await watcher.wait(String(config.state_topic), (t) => JSON.parse(t).client === HA_CLIENT);
    expect(JSON.parse(changed.text)).toEqual({
      on: true,
      color: { h: 0.33, s: 1 },
      brightness: 0.5,
      client: HA_CLIENT,
    });
    expect(haReads(config, changed.text)).toEqual({
      state: "on",
      brightness: 128,
      hs: [expect.closeTo(118.8, 1), 100],
    });
    // And HA's availability topic says the lamp is there.
    const availability = (config.availability as { topic: string; payload_available: string }[])[0];
    expect((await watcher.wait(String(availability?.topic))).text).toBe(availability?.payload_available);
    expect(agent.state).toEqual({ on: true, color: { h: 0.33, s: 1 }, brightness: 0.5 });
    // The entity and its device are this lamp's, by its LAMP_ID.
    expect(config.unique_id).toBe(`lamp-agent-${id}`);
    expect(config.device).toMatchObject({ identifiers: [`lamp-agent-${id}`] });
  });

  it("the sensors are retained beside the light and read the lamp's own telemetry and info", async () => {
    const agent = track(await startAgent(broker.url, { TELEMETRY_INTERVAL: "1" }));
    const filter = `homeassistant/sensor/${agent.id}/+/config`;
    const late = track(
      await Recorder.connect(broker.url, [filter, `lamp/${agent.id}/telemetry`, `lamp/${agent.id}/info`]),
    );
    const configs = await vi.waitFor(
      () => {
        const found = SENSORS.map(
          (s) => late.on(`homeassistant/sensor/${agent.id}/${s.key}/config`).find((m) => m.text !== "")?.text,
        );
        if (found.some((text) => text === undefined)) throw new Error("not yet");
        return found.map((text) => JSON.parse(text ?? "") as Record<string, unknown>);
      },
      { timeout: 10_000 },
    );
    expect(configs).toEqual(SENSORS.map((s) => sensorConfig(agent.agent.config, s)));
    const values = async (config: Record<string, unknown>) => {
      const message = await late.wait(String(config.state_topic));
      return render(config.value_template, { value_json: JSON.parse(message.text), value: message.text });
    };
    const [uptime, temperature, wifi, version] = configs as [
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    expect(await values(uptime)).toMatch(/^\d+$/);
    // This machine (a CI box or a VM) has neither: unknown in Home Assistant, not 0.
    expect(await values(temperature)).toMatch(/^(None|-?\d+(\.\d)?)$/);
    expect(await values(wifi)).toMatch(/^(None|-\d+)$/);
    expect(await values(version)).toBe(VERSION);
  });

  it("HA_DISCOVERY=false publishes nothing for Home Assistant", async () => {
    const { watcher, topic, id } = await lampWithHa({ HA_DISCOVERY: "false" });
    await watcher.wait(`lamp/${id}/changed`);
    await sleep(300);
    expect(watcher.on(topic)).toEqual([]);
  });

  it("a custom HA_DISCOVERY_PREFIX is used for the config and the status topic", async () => {
    const agent = track(await startAgent(broker.url, { HA_DISCOVERY_PREFIX: "ha" }));
    const topic = `ha/light/${agent.id}/config`;
    const watcher = track(await Recorder.connect(broker.url, [topic]));
    await watcher.wait(topic);
    const again = watcher.next(topic);
    await watcher.publish("ha/status", "online");
    await again;
  });

  it("lamp-agent --forget removes every retained topic of the lamp, says which, and does not disturb the running agent", async () => {
    const { watcher, topic, id, logs } = await lampWithHa({ TELEMETRY_INTERVAL: "1" });
    await watcher.wait(topic, (t) => t.length > 0);
    await watcher.wait(`lamp/${id}/changed`);
    const sensorTopic = `homeassistant/sensor/${id}/wifi_signal/config`;
    const info = track(await Recorder.connect(broker.url, [`lamp/${id}/info`, sensorTopic]));
    await info.wait(`lamp/${id}/info`);
    await info.wait(sensorTopic);
    const runForget = async (url = broker.url) => {
      const forget = spawn(process.execPath, [MAIN, "--forget"], {
        env: { PATH: process.env.PATH ?? "", MQTT_URL: url, LAMP_ID: id, GPIO_DRIVER: "mock" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      forget.stdout.on("data", (c: Buffer) => {
        out += c.toString();
      });
      forget.stderr.on("data", (c: Buffer) => {
        out += c.toString();
      });
      const code = await new Promise<number | null>((resolve) => forget.on("exit", resolve));
      expect(code, out).toBe(0);
      return out;
    };
    const out = await runForget();
    expect(out.trim().split("\n").sort()).toEqual(
      [
        `removed ${topic} (the Home Assistant light)`,
        `removed homeassistant/sensor/${id}/uptime/config (the Home Assistant sensor uptime)`,
        `removed homeassistant/sensor/${id}/cpu_temperature/config (the Home Assistant sensor cpu_temperature)`,
        `removed homeassistant/sensor/${id}/wifi_signal/config (the Home Assistant sensor wifi_signal)`,
        `removed homeassistant/sensor/${id}/version/config (the Home Assistant sensor version)`,
        `removed lamp/${id}/info (the lamp's info)`,
        `removed state/${id} (the lamp's presence)`,
        `removed lamp/${id}/changed (the lamp's last state)`,
      ].sort(),
    );
    await watcher.wait(topic, (t) => t === "");
    // A fresh subscriber to everything sees nothing retained of this lamp.
    const everything = track(await Recorder.connect(broker.url, ["#"]));
    await sleep(500);
    expect(everything.messages.filter((m) => m.retain && m.topic.includes(id))).toEqual([]);
    // The running agent was not kicked off (a one-shot client id of its own).
    expect(
      logs.some((l) => l.msg === "lost the broker connection; the lamp keeps working and will reconnect"),
    ).toBe(false);
    // A second run finds nothing left, and says so; given a cluster whose first node is down, it goes
    // on to the next.
    expect(await runForget(`mqtt://127.0.0.1:1,${broker.url}`)).toBe(
      `nothing retained for lamp ${id}: nothing to remove\n`,
    );
  });

  it("lamp-agent --forget says why when the broker cannot be reached, and exits 1", async () => {
    const forget = spawn(process.execPath, [MAIN, "--forget"], {
      env: {
        PATH: process.env.PATH ?? "",
        MQTT_URL: "mqtt://127.0.0.1:1,mqtt://127.0.0.1:2",
        LAMP_ID: "gone",
        GPIO_DRIVER: "mock",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    forget.stderr.on("data", (c: Buffer) => {
      err += c.toString();
    });
    expect(await new Promise((resolve) => forget.on("exit", resolve))).toBe(1);
    expect(err).toContain(
      "--forget failed: none of the 2 nodes of MQTT_URL let us in; the last: nothing accepts connections at 127.0.0.1:2 (ECONNREFUSED)",
    );
  });
});

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { IPublishPacket } from "mqtt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Config, loadConfig } from "../../../src/config.js";
import { MockDriver } from "../../../src/drivers/mock.js";
import { Control } from "../../../src/features/control.js";
import type { Feature } from "../../../src/features/feature.js";
import { FeatureHouse } from "../../../src/features/house.js";
import { Presence } from "../../../src/features/presence.js";
import { Lamp } from "../../../src/lamp/lamp.js";
import { Output } from "../../../src/lamp/output.js";
import { makeState } from "../../../src/lamp/state.js";
import type { Logger } from "../../../src/log.js";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { statePayload } from "../../../src/protocol/payloads.js";
import { FakeConnection } from "../../helpers/fake-connection.js";
import { captureLogger, LEVEL, silentLogger } from "../../helpers/log.js";

const dirs: string[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function configFor(env: Record<string, string> = {}): Config {
  const cwd = mkdtempSync(path.join(tmpdir(), "lamp-link-"));
  dirs.push(cwd);
  return loadConfig({ env: { LAMP_ID: "abc", GAMMA: "1", ...env }, cwd, dotenv: false }).config;
}

async function build(env: Record<string, string> = {}, logger: Logger = silentLogger()) {
  const config = configFor(env);
  const driver = new MockDriver({
    pins: config.pins,
    activeLow: false,
    frequency: 1000,
    sysfsRoot: "/sys",
    logger,
  });
  const lamp = new Lamp(new Output(driver, { gamma: 1, logger }), 3, makeState(true, 0, 0, 1), 0);
  await lamp.open();
  const connection = new FakeConnection();
  const link = new Link(config, lamp, connection, logger);
  return { config, driver, lamp, connection, link };
}

/**
 * What the agent builds for the lamp's commands: presence and control in the feature house on one
 * router; `extra` features after them. Named for what this file tested before the features came.
 */
class Link {
  private readonly features: Feature[];
  private house: FeatureHouse;
  constructor(
    config: Config,
    lamp: Lamp,
    private readonly connection: FakeConnection,
    private readonly logger: Logger,
  ) {
    this.features = [
      new Presence({ topic: config.topics.presence, mqtt: connection, logger }),
      new Control({ topics: config.topics, clientId: config.mqtt.clientId, lamp, mqtt: connection, logger }),
    ];
    this.house = this.build();
  }
  addFeature(feature: Feature): void {
    this.features.push(feature);
    this.house = this.build();
  }
  onConnect(): void {
    this.house.onConnect({
      protocol: 4,
      sessionPresent: false,
      node: "mqtt://broker",
      reconnects: 0,
      takenOver: false,
    });
  }
  onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    this.house.onMessage(topic, payload, packet);
  }
  goOffline(): Promise<void> {
    return this.house.stop();
  }
  private build(): FeatureHouse {
    return new FeatureHouse(this.features, new TopicRouter(this.connection, this.logger), this.logger);
  }
}

const packet = (retain = false) => ({ retain }) as IPublishPacket;
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const json = (text: string) => JSON.parse(text) as Record<string, unknown>;

describe("control and presence: connect", () => {
  it("subscribes to commands (and its own presence), publishes presence, then the whole state in the agent's name", async () => {
    const { connection, link } = await build();
    link.onConnect();
    await flush();
    expect(connection.sent[0]).toEqual({
      topic: "state/abc",
      payload: "1",
      options: { qos: 1, retain: true },
    });
    // The presence topic too: a `0` the lamp did not send is answered (CONTRACT section 13).
    expect(connection.subscribed).toEqual(["state/abc", "lamp/abc/set_config"]);
    expect(connection.sent[1]).toEqual({
      topic: "lamp/abc/changed",
      payload: statePayload(makeState(true, 0, 0, 1), "lamp-abc"),
      options: { qos: 1, retain: true },
    });
    expect(connection.sent).toHaveLength(2);
    await link.goOffline();
  });

  it("says 1 and its state in the turn it starts to listen, and lets the other features announce a turn later", async () => {
    const { connection, link } = await build();
    link.addFeature({
      name: "info-like",
      filters: [],
      online: () => void connection.publish("lamp/abc/info", "{}", { qos: 1, retain: true }),
    });
    link.onConnect();
    await flush();
    // MQTT.js writes a turn's publishes together: `1` is not held behind the announcements.
    expect(connection.sent.map((s) => s.topic)).toEqual(["state/abc", "lamp/abc/changed"]);
    await flush();
    expect(connection.sent.map((s) => s.topic)).toEqual(["state/abc", "lamp/abc/changed", "lamp/abc/info"]);
    await link.goOffline();
  });

  it("an announcement due after the lamp stopped is not made", async () => {
    const { link } = await build();
    const online = vi.fn();
    link.addFeature({ name: "late", filters: [], online });
    link.onConnect();
    await flush();
    await link.goOffline();
    await flush();
    expect(online).not.toHaveBeenCalled();
  });

  it("goOffline publishes presence 0 retained at QoS 1, saying since when", async () => {
    const { connection, link } = await build();
    await link.goOffline();
    expect(connection.sent).toEqual([
      {
        topic: "state/abc",
        payload: "0",
        options: { qos: 1, retain: true, userProperties: { since: expect.any(String) } },
      },
    ]);
    const since = connection.sent[0]?.options.userProperties?.since ?? "";
    expect(new Date(since).toISOString()).toBe(since);
  });
});

describe("control: commands", () => {
  async function connected(env: Record<string, string> = {}, logger?: Logger) {
    const parts = await build(env, logger);
    parts.link.onConnect();
    await flush();
    parts.connection.sent.length = 0;
    return parts;
  }
  const send = (link: Link, text: string, retain = false, topic = "lamp/abc/set_config") =>
    link.onMessage(topic, Buffer.from(text), packet(retain));

  it("applies a command and publishes the new state once, naming the sender", async () => {
    const { connection, link, lamp } = await connected();
    send(link, '{"on": true, "brightness": 0.123, "client": "lamp_ui"}');
    await flush();
    expect(lamp.state.brightness).toBe(0.12);
    expect(connection.sent).toHaveLength(1);
    expect(connection.sent[0]?.topic).toBe("lamp/abc/changed");
    expect(json(connection.sent[0]?.payload ?? "")).toEqual({
      on: true,
      color: { h: 0, s: 0 },
      brightness: 0.12,
      client: "lamp_ui",
    });
    await link.goOffline();
  });

  it("publishes client null for a command without a client", async () => {
    const { connection, link } = await connected();
    send(link, '{"on": false}');
    await flush();
    expect(json(connection.sent[0]?.payload ?? "").client).toBeNull();
    await link.goOffline();
  });

  it("publishes nothing for a command that changes nothing", async () => {
    const { connection, link } = await connected();
    send(link, '{"on": true, "brightness": 1, "client": "lamp_ui"}');
    send(link, "{}");
    await flush();
    expect(connection.sent).toEqual([]);
    await link.goOffline();
  });

  it("ignores an empty payload silently", async () => {
    const { logger, lines } = captureLogger("info");
    const { connection, link } = await connected({}, logger);
    const before = lines.length;
    send(link, "");
    send(link, "", true);
    await flush();
    expect(connection.sent).toEqual([]);
    expect(lines.slice(before).filter((l) => l.level >= LEVEL.warn)).toEqual([]);
    await link.goOffline();
  });

  it("acts on a live command whatever its sender's retain flag (the link sees only replays flagged)", async () => {
    const { link, lamp } = await connected();
    send(link, '{"on": false, "client": "alexa_voice"}');
    await flush();
    expect(lamp.state.on).toBe(false);
    await link.goOffline();
  });

  it("rejects a command replayed from the broker's store with retained_command, naming its sender", async () => {
    const { connection, link, lamp } = await connected();
    send(link, '{"on": false, "client": "alexa_voice"}', true);
    send(link, "not json", true);
    await flush();
    expect(lamp.state.on).toBe(true);
    expect(connection.sent).toHaveLength(2);
    const [error, anonymous] = connection.sent;
    expect(error?.topic).toBe("lamp/abc/error");
    expect(error?.options).toEqual({ qos: 0, retain: false });
    expect(json(error?.payload ?? "")).toMatchObject({ error: "retained_command", client: "alexa_voice" });
    expect(json(error?.payload ?? "").message).toMatch(
      /retained.*mosquitto_pub -h <host> -p <port> -r -n -t 'lamp\/abc\/set_config'/,
    );
    expect(json(anonymous?.payload ?? "")).toMatchObject({ error: "retained_command", client: null });
    await link.goOffline();
  });

  it("publishes a parse error with its code, message and the sender", async () => {
    const { connection, link, lamp } = await connected();
    send(link, '{"on": false, "brightness": 7, "client": "lamp_ui"}');
    send(link, '{"hue": 1}');
    send(link, "not json");
    await flush();
    expect(lamp.state.on).toBe(true);
    expect(connection.sent.map((s) => s.topic)).toEqual([
      "lamp/abc/error",
      "lamp/abc/error",
      "lamp/abc/error",
    ]);
    expect(connection.sent.map((s) => json(s.payload))).toEqual([
      { error: "invalid_field", message: "brightness must be a number from 0 to 1", client: "lamp_ui" },
      { error: "unknown_field", message: "unknown field: hue", client: null },
      { error: "invalid_json", message: expect.stringMatching(/^payload is not JSON/), client: null },
    ]);
    await link.goOffline();
  });

  it("drops a command naming the agent itself as its client", async () => {
    const { connection, link, lamp } = await connected();
    send(link, '{"on": false, "client": "lamp-abc"}');
    await flush();
    expect(lamp.state.on).toBe(true);
    expect(connection.sent).toEqual([]);
    await link.goOffline();
  });

  it("rate-limits errors: a burst of 10, then 2 a second, and reports how many it held back", async () => {
    // Fake Date (the limiter's clock) but not setImmediate, which `connected()` awaits.
    vi.useFakeTimers({ toFake: ["Date", "setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    const { logger, lines } = captureLogger("info");
    const { connection, link } = await connected({}, logger);
    for (let i = 0; i < 50; i++) send(link, "garbage");
    expect(connection.on("lamp/abc/error")).toHaveLength(10);
    await vi.advanceTimersByTimeAsync(1000);
    for (let i = 0; i < 50; i++) send(link, "garbage");
    expect(connection.on("lamp/abc/error")).toHaveLength(12);
    const warnings = lines.filter((l) => l.msg.startsWith("rejected a command"));
    expect(warnings).toHaveLength(12);
    expect(warnings[10]?.suppressed).toBe(40);
    // Nothing held back before the others: no `suppressed=0`.
    expect(warnings.filter((w) => "suppressed" in w)).toHaveLength(1);
    await link.goOffline();
  });

  it("passes messages on other topics to the feature that asked for them, not to the parser", async () => {
    const { connection, link } = await build();
    const onMessage = vi.fn();
    const onConnect = vi.fn();
    link.addFeature({
      name: "extra",
      filters: [{ filter: "homeassistant/status" }],
      online: onConnect,
      message: (topic, payload) => onMessage(topic, payload),
    });
    link.onConnect();
    await flush();
    expect(connection.subscribed).toEqual(["state/abc", "lamp/abc/set_config", "homeassistant/status"]);
    // A feature that is not urgent goes online a turn after presence and the state.
    expect(onConnect).not.toHaveBeenCalled();
    await flush();
    expect(onConnect).toHaveBeenCalledTimes(1);
    connection.sent.length = 0;
    send(link, "online", false, "homeassistant/status");
    send(link, "junk", false, "elsewhere");
    await flush();
    expect(onMessage).toHaveBeenCalledWith("homeassistant/status", Buffer.from("online"));
    expect(onMessage).toHaveBeenCalledTimes(1);
    expect(connection.sent).toEqual([]);
    await link.goOffline();
  });

  it("holds the pins while a reconnect backlog arrives, then shows only the last command", async () => {
    vi.useFakeTimers();
    const { driver, connection, link } = await build();
    const write = vi.spyOn(driver, "write");
    link.onConnect();
    for (const b of [0.1, 0.2, 0.3, 0.4]) {
      send(link, `{"brightness": ${b}, "client": "ui"}`);
      await vi.advanceTimersByTimeAsync(30);
    }
    expect(write).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(150);
    expect(write).toHaveBeenCalledTimes(1);
    expect(driver.duties).toEqual([0.4, 0.4, 0.4]);
    // Every state was still published, the last one last.
    const states = connection.on("lamp/abc/changed").map((s) => json(s.payload).brightness);
    expect(states.at(-1)).toBe(0.4);
    await link.goOffline();
  });
});

describe("control: command topic equal to state topic", () => {
  const shared = { COMMAND_TOPIC: "lamp/abc/io", STATE_TOPIC: "lamp/abc/io" };

  it("one command yields exactly one state, and the echo fed back is quiet", async () => {
    const { connection, link, lamp } = await build(shared);
    link.onConnect();
    await flush();
    // The connect-time state comes back to us (MQTT 3.1.1 has no No Local): quiet.
    for (const s of connection.on("lamp/abc/io")) link.onMessage(s.topic, Buffer.from(s.payload), packet());
    await flush();
    connection.sent.length = 0;

    link.onMessage("lamp/abc/io", Buffer.from('{"on": false, "client": "lamp_ui"}'), packet());
    await flush();
    expect(connection.sent).toHaveLength(1);
    const state = connection.sent[0];
    expect(json(state?.payload ?? "")).toMatchObject({ on: false, client: "lamp_ui" });

    // Feed every message back until the system is quiet; it must be quiet at once.
    for (let round = 0; round < 3; round++) {
      const echoes = connection.sent.splice(0);
      for (const s of echoes) link.onMessage(s.topic, Buffer.from(s.payload), packet());
      await flush();
    }
    expect(connection.sent).toEqual([]);
    expect(lamp.state.on).toBe(false);
    await link.goOffline();
  });

  it("an echo arriving after a newer command does not undo it", async () => {
    const { connection, link, lamp } = await build(shared);
    link.onConnect();
    await flush();
    connection.sent.length = 0;
    link.onMessage("lamp/abc/io", Buffer.from('{"brightness": 0.3, "client": "ui"}'), packet());
    await flush();
    const echo = connection.sent[0]?.payload ?? "";
    link.onMessage("lamp/abc/io", Buffer.from('{"brightness": 0.6, "client": "ui"}'), packet());
    await flush();
    link.onMessage("lamp/abc/io", Buffer.from(echo), packet());
    await flush();
    expect(lamp.state.brightness).toBe(0.6);
    await link.goOffline();
  });

  // ODDITY (src/features/control.ts): with COMMAND_TOPIC equal to STATE_TOPIC, the broker hands us our own
  // *retained* state when we subscribe after every (re)connect. It is not in the echo ledger (it was
  // published by an earlier connection or process), so it is treated as a retained command and a
  // `retained_command` error goes out on <base>/error at every reconnect. The guard should recognise a
  // retained message on the shared topic as our own state (e.g. ignore retained messages there silently).
  it("does not report its own retained state, delivered on subscribe, as a retained command", async () => {
    const { connection, link } = await build(shared);
    link.onConnect();
    await flush();
    connection.sent.length = 0;
    const previous = statePayload(makeState(true, 0.5, 1, 0.8), "lamp_ui");
    link.onMessage("lamp/abc/io", Buffer.from(previous), packet(true));
    await flush();
    expect(connection.on("lamp/abc/error")).toEqual([]);
    await link.goOffline();
  });
});

describe("control: the state-change log", () => {
  const cmd = (brightness: number) => Buffer.from(JSON.stringify({ brightness, client: "slider" }));

  it("logs a single change at once, and a burst as one more line with the newest state and how many changes it stands for", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { logger, lines } = captureLogger("info");
    const { config, link } = await build({}, logger);
    const changes = () => lines.filter((l) => l.msg === "state changed");
    link.onMessage(config.topics.command, cmd(0.5), packet());
    await flush();
    expect(changes()).toHaveLength(1);
    expect(changes()[0]).toMatchObject({ brightness: 0.5, client: "slider" });
    for (let i = 1; i <= 200; i++) link.onMessage(config.topics.command, cmd(i % 2 ? 0.2 : 0.3), packet());
    await flush();
    expect(changes()).toHaveLength(1);
    vi.advanceTimersByTime(500);
    expect(changes()).toHaveLength(2);
    expect(changes()[1]).toMatchObject({ brightness: 0.3, changes: 200 });
    vi.advanceTimersByTime(2000);
    expect(changes()).toHaveLength(2);
  });

  it("writes what it held back when the agent goes offline", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { logger, lines } = captureLogger("info");
    const { config, link } = await build({}, logger);
    link.onMessage(config.topics.command, cmd(0.5), packet());
    link.onMessage(config.topics.command, cmd(0.6), packet());
    await flush();
    await link.goOffline();
    expect(lines.filter((l) => l.msg === "state changed").map((l) => l.brightness)).toEqual([0.5, 0.6]);
  });
});

// A cut cable: the proxy between agent and broker stops forwarding and closes nothing, so neither side
// learns of the loss from TCP. Only the keepalives can tell them.
import { beforeAll, describe, expect, it, vi } from "vitest";
import { showing, spawnAgent, white } from "../helpers/agent-process.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { teardown } from "../helpers/teardown.js";

const KEEPALIVE_S = 2;

const track = teardown("all");
let broker: TestBroker;
let proxy: TcpProxy;

beforeAll(async () => {
  broker = track(await startBroker());
  proxy = track(await new TcpProxy(broker.port).start());
});

describe("a silent partition between agent and broker", () => {
  it("fires the Will within 1.5 keepalives, the agent notices on its own, the lamp stays lit, and presence returns with the link", async () => {
    const lamp = track(
      spawnAgent(proxy.url, {
        MQTT_KEEPALIVE: String(KEEPALIVE_S),
        MQTT_RECONNECT_MIN_MS: "200",
        MQTT_RECONNECT_MAX_MS: "1000",
      }),
    );
    const presence = `state/${lamp.id}`;
    const base = `lamp/${lamp.id}`;
    const state = (text: string) => JSON.parse(text) as { client: string; brightness: number };
    const watcher = track(await Recorder.connect(broker.url, [presence, `${base}/changed`]));
    await watcher.wait(presence, (t) => t === "1", 15_000);
    await watcher.publish(`${base}/set_config`, white(0.4, "ui"));
    await watcher.wait(`${base}/changed`, (t) => state(t).client === "ui");
    await vi.waitFor(() => expect(showing(lamp.duties(), 0.4)).toBe(true));
    const writesBefore = lamp.trace().length;

    const frozenAt = Date.now();
    proxy.freeze();
    const will = await watcher.next(presence, (t) => t === "0", 15_000);
    // Mosquitto fires the Will 1.5 keepalives after the last packet it got; it checks once a second,
    // hence the margin. Not a performance figure: a protocol deadline.
    expect(will.at - frozenAt).toBeLessThanOrEqual(1.5 * KEEPALIVE_S * 1000 + 1500);

    // The agent finds out by itself (its PINGREQ goes unanswered) while the link is still down.
    const lost = () => lamp.logs.some((l) => l.msg.startsWith("lost the broker connection"));
    await vi.waitFor(() => expect(lost()).toBe(true), {
      timeout: 3 * KEEPALIVE_S * 1000 + 3000,
      interval: 100,
    });
    expect(lamp.child.exitCode).toBeNull();
    // The lamp never stopped: no write (no close, no default) while cut off, still at the last command.
    expect(lamp.trace().length).toBe(writesBefore);
    expect(showing(lamp.duties(), 0.4)).toBe(true);

    watcher.clear();
    proxy.restore();
    // A reconnect attempt made while frozen waits out its connect timeout (10 s) before the next one.
    const back = await watcher.wait(presence, (t) => t === "1", 25_000);
    expect(back.retain).toBe(false);
    // State re-announced after the presence, then commands work again.
    const announced = await watcher.wait(`${base}/changed`, (t) => state(t).client === `lamp-${lamp.id}`);
    expect(announced.at).toBeGreaterThanOrEqual(back.at);
    expect(state(announced.text).brightness).toBe(0.4);
    await watcher.publish(`${base}/set_config`, white(0.7, "ui"));
    await watcher.wait(`${base}/changed`, (t) => state(t).brightness === 0.7);
    await vi.waitFor(() => expect(showing(lamp.duties(), 0.7)).toBe(true));
    expect(lamp.logs.filter((l) => l.level >= 60)).toEqual([]);
  }, 60_000);
});

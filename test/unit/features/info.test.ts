import { describe, expect, it, vi } from "vitest";
import { FeatureHouse } from "../../../src/features/house.js";
import { Info } from "../../../src/features/info.js";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { FakeConnection } from "../../helpers/fake-connection.js";
import { captureLogger } from "../../helpers/log.js";

const TOPIC = "lamp/abc/info";
const lamp = {
  id: "abc",
  name: "abc",
  version: "1.0.0",
  driver: "mock",
  pins: [17],
  groups: ["all"],
  board: null,
  node: "20.0.0",
  started_at: "2026-12-06T00:00:00.000Z",
  telemetry_interval: 60,
};
const connect = {
  protocol: 4,
  sessionPresent: false,
  node: "mqtt://a",
  reconnects: 0,
  takenOver: false,
} as const;

function build() {
  const connection = new FakeConnection({ acks: true });
  const { logger, lines } = captureLogger("debug");
  const onRival = vi.fn();
  const info = new Info({ topic: TOPIC, mqtt: connection, logger, lamp, clientId: "lamp-abc", onRival });
  const house = new FeatureHouse([info], new TopicRouter(connection, logger), logger);
  return { connection, house, info, onRival, lines };
}

/** What the broker delivers on the info topic: `retain` as it flags it. */
function deliver(house: FeatureHouse, instance: string | undefined, retain: boolean): void {
  const payload = Buffer.from(JSON.stringify({ ...lamp, broker: "mqtt://a", mqtt: "3.1.1", instance }));
  house.onMessage(TOPIC, payload, { retain } as never);
}

describe("info", () => {
  it("publishes what the lamp is, retained at QoS 1, with this process's own instance", async () => {
    const { connection, house, info } = build();
    house.onConnect(connect);
    await vi.waitFor(() => expect(connection.sent).toHaveLength(1));
    const [sent] = connection.sent;
    expect(sent?.topic).toBe(TOPIC);
    expect(sent?.options).toMatchObject({ qos: 1, retain: true });
    expect(JSON.parse(sent?.payload ?? "")).toMatchObject({ id: "abc", instance: info.instance });
    expect(info.instance).toMatch(/^[0-9a-f]{12}$/);
    expect(
      new Info({ topic: TOPIC, mqtt: connection, logger: captureLogger().logger, lamp, clientId: "x" })
        .instance,
    ).not.toBe(info.instance);
  });

  it("takes a retained info of another process on the first connect for this lamp's previous run", async () => {
    const { connection, house, onRival } = build();
    house.onConnect(connect);
    deliver(house, "0123456789ab", true);
    await vi.waitFor(() => expect(connection.sent).toHaveLength(1));
    expect(onRival).not.toHaveBeenCalled();
  });

  it("tells of another agent with this id when another process's info was retained after ours", async () => {
    const { connection, house, info, onRival, lines } = build();
    house.onConnect(connect);
    await vi.waitFor(() => expect(connection.sent).toHaveLength(1));
    await connection.ack();
    // Our own info, and what is not an info at all (a --forget clears it), say nothing.
    deliver(house, info.instance, true);
    house.onMessage(TOPIC, Buffer.from(""), { retain: true } as never);
    deliver(house, undefined, true);
    expect(onRival).not.toHaveBeenCalled();
    // The next connect replays what the broker kept: the twin's, published while it held the session.
    house.onConnect({ ...connect, reconnects: 1 });
    deliver(house, "0123456789ab", true);
    expect(onRival).toHaveBeenCalledTimes(1);
    expect(lines.some((l) => l.msg === "another process published this lamp's info")).toBe(true);
  });

  it("tells of another agent at once when its info comes live, even before ours is acknowledged", () => {
    const { house, onRival } = build();
    house.onConnect(connect);
    deliver(house, "0123456789ab", false);
    expect(onRival).toHaveBeenCalledTimes(1);
  });

  it("publishes its own only once the broker replayed the retained one, so a twin's is read first", async () => {
    vi.useFakeTimers();
    try {
      const { connection, house, onRival } = build();
      // The first connect publishes at once: what the broker kept is this lamp's previous run's.
      house.onConnect(connect);
      await vi.advanceTimersByTimeAsync(0);
      expect(connection.sent).toHaveLength(1);
      await connection.ack();
      // Online, the broker has not replayed yet (Aedes on Redis: tens of ms after the SUBACK).
      house.onConnect({ ...connect, reconnects: 1 });
      await vi.advanceTimersByTimeAsync(100);
      expect(connection.sent).toHaveLength(1);
      deliver(house, "0123456789ab", true);
      expect(onRival).toHaveBeenCalledTimes(1);
      expect(connection.sent).toHaveLength(2);
      // Nothing retained at all: ours goes out anyway, half a second on.
      house.onConnect({ ...connect, reconnects: 2 });
      await vi.advanceTimersByTimeAsync(400);
      expect(connection.sent).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(200);
      expect(connection.sent).toHaveLength(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it("does not count an info of ours that the broker never acknowledged", async () => {
    const { connection, house, onRival } = build();
    house.onConnect(connect);
    await vi.waitFor(() => expect(connection.sent).toHaveLength(1));
    // Connection lost before the PUBACK: what the broker retained may still be the previous run's.
    house.onConnect({ ...connect, reconnects: 1 });
    deliver(house, "0123456789ab", true);
    expect(onRival).not.toHaveBeenCalled();
  });
});

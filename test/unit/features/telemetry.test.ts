import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FeatureHouse } from "../../../src/features/house.js";
import { Telemetry } from "../../../src/features/telemetry.js";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { FakeConnection } from "../../helpers/fake-connection.js";
import { captureLogger } from "../../helpers/log.js";

/** Every message published, parsed. */
const messages = (connection: FakeConnection) =>
  connection.sent.map((s) => JSON.parse(s.payload) as Record<string, unknown>);

function build(interval = 10) {
  connects = 0;
  const root = mkdtempSync(path.join(tmpdir(), "lamp-telemetry-"));
  mkdirSync(path.join(root, "class/thermal/thermal_zone0"), { recursive: true });
  writeFileSync(path.join(root, "class/thermal/thermal_zone0/temp"), "45500\n");
  mkdirSync(path.join(root, "net"));
  writeFileSync(
    path.join(root, "net/wireless"),
    "Inter-| sta-|   Quality        |\n face | tus | link level noise |\n wlan0: 0000   60.  -55.  -256  0 0 0 0 0 0\n",
  );
  const connection = new FakeConnection();
  const { logger } = captureLogger("debug");
  let uptime = 0;
  const telemetry = new Telemetry({
    topic: "lamp/abc/telemetry",
    interval,
    mqtt: connection,
    logger,
    sysfsRoot: root,
    procRoot: root,
    uptime: () => uptime,
  });
  const house = new FeatureHouse([telemetry], new TopicRouter(connection, logger), logger);
  return {
    connection,
    house,
    telemetry,
    tick: (s: number) => {
      uptime += s;
    },
  };
}

let connects = 0;
/** What the connection says on each connect: its count of connects before this one. */
const connect = () =>
  ({
    protocol: 5,
    sessionPresent: true,
    node: "mqtt://a",
    reconnects: connects++,
    takenOver: false,
  }) as const;

afterEach(() => {
  vi.useRealTimers();
});

describe("telemetry", () => {
  it("publishes once online and then every interval, QoS 0, not retained, with real figures", async () => {
    vi.useFakeTimers();
    const { connection, house, tick } = build(10);
    house.onConnect(connect());
    await vi.advanceTimersByTimeAsync(0);
    expect(connection.sent).toHaveLength(1);
    tick(10);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(connection.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(connection.sent).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(connection.sent).toHaveLength(5);
    expect(connection.sent.every((s) => s.topic === "lamp/abc/telemetry")).toBe(true);
    expect(connection.sent.every((s) => s.options.qos === 0 && !s.options.retain)).toBe(true);
    expect(messages(connection)[1]).toEqual({
      uptime_s: 10,
      reconnects: 0,
      rss_mib: expect.any(Number),
      cpu_temp_c: 45.5,
      wifi_rssi_dbm: -55,
      load1: expect.any(Number),
    });
    expect(Object.keys(messages(connection)[0] ?? {})).toEqual([
      "uptime_s",
      "reconnects",
      "rss_mib",
      "cpu_temp_c",
      "wifi_rssi_dbm",
      "load1",
    ]);
  });

  it("stops at a lost connection, counts every connect after the first as a reconnect", async () => {
    vi.useFakeTimers();
    const { connection, house, telemetry } = build(10);
    house.onConnect(connect());
    await vi.advanceTimersByTimeAsync(0);
    // The connection drops; the next CONNACK arrives much later: nothing published in between.
    connection.connected = false;
    await vi.advanceTimersByTimeAsync(60_000);
    connection.connected = true;
    const before = connection.sent.length;
    house.onConnect(connect());
    expect(telemetry.reconnects).toBe(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(connection.sent).toHaveLength(before + 1);
    expect(messages(connection).at(-1)?.reconnects).toBe(1);
    house.onConnect(connect());
    await vi.advanceTimersByTimeAsync(10_000);
    expect(messages(connection).at(-1)?.reconnects).toBe(2);
  });

  it("no timer between a connect and its online; none at all after stop()", async () => {
    vi.useFakeTimers();
    const { connection, house, telemetry } = build(10);
    telemetry.connected(connect());
    await vi.advanceTimersByTimeAsync(60_000);
    expect(connection.sent).toHaveLength(0);
    telemetry.online();
    expect(connection.sent).toHaveLength(1);
    await house.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(connection.sent).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("TELEMETRY_INTERVAL=0 publishes nothing, ever", async () => {
    vi.useFakeTimers();
    const { connection, house } = build(0);
    house.onConnect(connect());
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(connection.sent).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { FeatureHouse } from "../../../src/features/house.js";
import { Presence } from "../../../src/features/presence.js";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { FakeConnection } from "../../helpers/fake-connection.js";
import { captureLogger } from "../../helpers/log.js";

/** How many times the lamp said 1. */
const ones = (connection: FakeConnection) => connection.sent.filter((s) => s.payload === "1").length;

const live = { retain: false } as never;

function build() {
  const connection = new FakeConnection({ grants: true });
  const { logger, lines } = captureLogger("debug");
  const presence = new Presence({ topic: "state/abc", mqtt: connection, logger });
  const house = new FeatureHouse([presence], new TopicRouter(connection, logger), logger);
  return { connection, house, lines };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("presence", () => {
  it("says 1 only once the subscriptions are granted when the broker kept no session", async () => {
    vi.useFakeTimers();
    const { connection, house } = build();
    house.onConnect({
      protocol: 4,
      sessionPresent: false,
      node: "mqtt://a",
      reconnects: 0,
      takenOver: false,
    });
    await vi.advanceTimersByTimeAsync(100);
    expect(ones(connection)).toBe(0);
    connection.grant();
    await vi.advanceTimersByTimeAsync(0);
    expect(connection.sent).toEqual([
      { topic: "state/abc", payload: "1", options: { qos: 1, retain: true } },
    ]);
  });

  it("says 1 at once when the broker kept the session (and the subscriptions with it)", async () => {
    vi.useFakeTimers();
    const { connection, house } = build();
    house.onConnect({ protocol: 4, sessionPresent: true, node: "mqtt://a", reconnects: 0, takenOver: false });
    await vi.advanceTimersByTimeAsync(0);
    expect(ones(connection)).toBe(1);
  });

  it("answers a 0 it did not send (a late Will) with 1 within 2 s, rate-limited, and catches up later", async () => {
    vi.useFakeTimers();
    const { connection, house, lines } = build();
    house.onConnect({ protocol: 4, sessionPresent: true, node: "mqtt://a", reconnects: 0, takenOver: false });
    await vi.advanceTimersByTimeAsync(0);
    house.onMessage("state/abc", Buffer.from("1"), live);
    expect(ones(connection)).toBe(1);
    // Late: well after the connection began (a 0 as it begins is from before it: see below).
    await vi.advanceTimersByTimeAsync(3000);
    // A sweep of Wills: many at once are one answer.
    for (let i = 0; i < 10; i++) house.onMessage("state/abc", Buffer.from("0"), live);
    await vi.advanceTimersByTimeAsync(2000);
    expect(ones(connection)).toBe(2);
    // Three answers at once, then one every 10 s however often it comes.
    for (let i = 0; i < 4; i++) {
      house.onMessage("state/abc", Buffer.from("0"), live);
      await vi.advanceTimersByTimeAsync(500);
    }
    expect(ones(connection)).toBe(4);
    expect(
      lines.filter((l) => l.level === 40 && /presence 0 while this lamp is connected/.test(l.msg)),
    ).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ones(connection)).toBe(5);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(ones(connection)).toBe(5);
  });

  it("answers a 0 from before the connection (its last run's Will, a retained 0) with 1, without a warning", async () => {
    vi.useFakeTimers();
    const { connection, house, lines } = build();
    // Into a kept session: the 1 first, then what the session queued and what the broker retained.
    house.onConnect({ protocol: 4, sessionPresent: true, node: "mqtt://a", reconnects: 0, takenOver: false });
    await vi.advanceTimersByTimeAsync(0);
    // The Will of the last run, killed, queued in the session: live.
    house.onMessage("state/abc", Buffer.from("0"), live);
    await vi.advanceTimersByTimeAsync(400);
    // The retained 0 the renewed subscription replays.
    house.onMessage("state/abc", Buffer.from("0"), { retain: true } as never);
    await vi.advanceTimersByTimeAsync(600);
    expect(ones(connection)).toBe(3);
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(lines.filter((l) => /from before this connection came as it began/.test(l.msg))).toHaveLength(2);
    // Later, a 0 is news (a Will published late, whatever its retain flag): a warning.
    await vi.advanceTimersByTimeAsync(5000);
    house.onMessage("state/abc", Buffer.from("0"), { retain: true } as never);
    await vi.advanceTimersByTimeAsync(1000);
    expect(ones(connection)).toBe(4);
    expect(
      lines.filter((l) => l.level === 40 && /presence 0 while this lamp is connected/.test(l.msg)),
    ).toHaveLength(1);
  });

  it("does not answer a 0 that arrives just before the connection closes (a broker shutting down)", async () => {
    vi.useFakeTimers();
    const { connection, house } = build();
    house.onConnect({ protocol: 4, sessionPresent: true, node: "mqtt://a", reconnects: 0, takenOver: false });
    await vi.advanceTimersByTimeAsync(0);
    house.onMessage("state/abc", Buffer.from("0"), live);
    connection.connected = false;
    await vi.advanceTimersByTimeAsync(20_000);
    expect(ones(connection)).toBe(1);
  });

  it("does not answer a 0 before it is online, nor after it stopped (its own clean-stop 0)", async () => {
    vi.useFakeTimers();
    const { connection, house } = build();
    house.onConnect({
      protocol: 4,
      sessionPresent: false,
      node: "mqtt://a",
      reconnects: 0,
      takenOver: false,
    });
    house.onMessage("state/abc", Buffer.from("0"), live);
    expect(ones(connection)).toBe(0);
    connection.grant();
    await vi.advanceTimersByTimeAsync(0);
    await house.stop();
    house.onMessage("state/abc", Buffer.from("0"), live);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(connection.sent.map((s) => s.payload)).toEqual(["1", "0"]);
  });

  it("a connect that is lost before its grants never says 1 for it", async () => {
    vi.useFakeTimers();
    const { connection, house } = build();
    house.onConnect({
      protocol: 4,
      sessionPresent: false,
      node: "mqtt://a",
      reconnects: 0,
      takenOver: false,
    });
    house.onConnect({ protocol: 4, sessionPresent: true, node: "mqtt://b", reconnects: 0, takenOver: false });
    await vi.advanceTimersByTimeAsync(0);
    connection.grant();
    await vi.advanceTimersByTimeAsync(0);
    expect(ones(connection)).toBe(1);
  });
});

import { describe, expect, it, vi } from "vitest";
import type { PublishOptions } from "../../../src/mqtt/connection.js";
import { StatePublisher } from "../../../src/mqtt/state-publisher.js";
import { captureLogger, LEVEL, silentLogger } from "../../helpers/log.js";

/** A connection whose publishes settle only when the test says so. */
function fakeConnection() {
  const pending: { payload: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  const connection = {
    connected: true,
    publishThen: vi.fn(
      (_topic: string, payload: string, _options: PublishOptions, done: (e?: Error) => void) =>
        pending.push({ payload, resolve: () => done(), reject: (e) => done(e) }),
    ),
  };
  return { connection, pending };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("StatePublisher", () => {
  it("publishes retained at QoS 1 on its topic and tells onSend", () => {
    const { connection } = fakeConnection();
    const onSend = vi.fn();
    const publisher = new StatePublisher(connection, "lamp/x/changed", silentLogger(), onSend);
    publisher.publish("A");
    expect(connection.publishThen).toHaveBeenCalledWith(
      "lamp/x/changed",
      "A",
      { qos: 1, retain: true },
      expect.any(Function),
    );
    expect(onSend).toHaveBeenCalledWith("A");
  });

  it("keeps one publish in flight; the latest of what came meanwhile goes next", async () => {
    const { connection, pending } = fakeConnection();
    const onSend = vi.fn();
    const publisher = new StatePublisher(connection, "t", silentLogger(), onSend);
    publisher.publish("A");
    publisher.publish("B");
    publisher.publish("C");
    publisher.publish("D");
    expect(connection.publishThen).toHaveBeenCalledTimes(1);
    pending.shift()?.resolve();
    await tick();
    expect(connection.publishThen.mock.calls.map((c) => c[1])).toEqual(["A", "D"]);
    pending.shift()?.resolve();
    await tick();
    expect(connection.publishThen).toHaveBeenCalledTimes(2);
    expect(onSend.mock.calls.map((c) => c[0])).toEqual(["A", "D"]);
  });

  it("frees its slot inside the acknowledgement: a state published in the same tick goes out at once", () => {
    const { connection, pending } = fakeConnection();
    const publisher = new StatePublisher(connection, "t", silentLogger(), () => undefined);
    publisher.publish("A");
    // The PUBACK for A and the next command come in one read: no tick between them.
    pending.shift()?.resolve();
    publisher.publish("B");
    expect(connection.publishThen.mock.calls.map((c) => c[1])).toEqual(["A", "B"]);
  });

  it("goes on after a failed publish, with a warning", async () => {
    const { connection, pending } = fakeConnection();
    const { logger, lines } = captureLogger();
    const publisher = new StatePublisher(connection, "t", logger, () => undefined);
    publisher.publish("A");
    publisher.publish("B");
    pending.shift()?.reject(new Error("broker said no"));
    await tick();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: LEVEL.warn,
      msg: "could not publish the state",
      cause: "broker said no",
    });
    expect(connection.publishThen.mock.calls.map((c) => c[1])).toEqual(["A", "B"]);
  });

  it("sends nothing while disconnected", () => {
    const { connection } = fakeConnection();
    connection.connected = false;
    const publisher = new StatePublisher(connection, "t", silentLogger(), () => undefined);
    publisher.publish("A");
    expect(connection.publishThen).not.toHaveBeenCalled();
  });

  it("after reset, a fresh publish is not stuck behind one the old connection never acknowledged", async () => {
    const { connection, pending } = fakeConnection();
    const publisher = new StatePublisher(connection, "t", silentLogger(), () => undefined);
    publisher.publish("old");
    publisher.publish("queued");
    publisher.reset(); // reconnect: "old" may never be acknowledged; "queued" is stale
    publisher.publish("fresh");
    expect(connection.publishThen.mock.calls.map((c) => c[1])).toEqual(["old", "fresh"]);
    // The old acknowledgement arriving late must not start a second publish alongside "fresh".
    pending.shift()?.resolve();
    await tick();
    publisher.publish("next");
    expect(connection.publishThen).toHaveBeenCalledTimes(2);
    pending.shift()?.resolve();
    await tick();
    expect(connection.publishThen.mock.calls.map((c) => c[1])).toEqual(["old", "fresh", "next"]);
  });
});

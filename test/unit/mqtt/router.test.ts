import type { IPublishPacket } from "mqtt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { captureLogger, silentLogger } from "../../helpers/log.js";

const packet = { retain: false } as IPublishPacket;

/** Grants what it is told to, refuses the rest; records every SUBSCRIBE with its No Local flag. */
class FakeSubscriber {
  connected = true;
  refuse = new Set<string>();
  readonly calls: { filter: string; noLocal: boolean | undefined }[] = [];
  subscribe(filter: string, options?: { noLocal?: boolean }): Promise<void> {
    this.calls.push({ filter, noLocal: options?.noLocal });
    return this.refuse.has(filter)
      ? Promise.reject(new Error("refused: unspecified error"))
      : Promise.resolve();
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe("TopicRouter's topic matching", () => {
  it.each([
    ["lamp/abc/set_config", "lamp/abc/set_config", true],
    ["lamp/+/set_config", "lamp/abc/set_config", true],
    ["lamp/+/set_config", "lamp/abc/changed", false],
    ["lamp/+", "lamp/abc/set_config", false],
    ["lamp/#", "lamp/abc/set_config", true],
    ["lamp/#", "lamp", true],
    ["#", "lamp/abc", true],
    ["+/+", "/abc", true],
    ["state/+", "state/abc", true],
    ["state/+", "state/abc/x", false],
    ["#", "$SYS/broker/uptime", false],
    ["+/broker/uptime", "$SYS/broker/uptime", false],
    ["$SYS/#", "$SYS/broker/uptime", true],
    ["lamp/group/all/set_config", "lamp/group/all/set_config/x", false],
  ])("%s against %s: %s", (filter, topic, expected) => {
    // Through dispatch(), which matches exact filters and wildcard ones by different paths.
    const router = new TopicRouter(new FakeSubscriber(), silentLogger());
    const handler = vi.fn();
    router.add(filter, handler);
    expect(router.dispatch(topic, Buffer.from("x"), packet)).toBe(expected);
    expect(handler).toHaveBeenCalledTimes(expected ? 1 : 0);
  });
});

describe("TopicRouter", () => {
  it("hands a message to every handler whose filter matches, once however many of its filters do", () => {
    const router = new TopicRouter(new FakeSubscriber(), silentLogger());
    const wide = vi.fn();
    const narrow = vi.fn();
    router.add("lamp/+/set_config", wide);
    router.add("lamp/#", wide);
    router.add("lamp/abc/set_config", narrow);
    expect(router.dispatch("lamp/abc/set_config", Buffer.from("x"), packet)).toBe(true);
    expect(wide).toHaveBeenCalledTimes(1);
    expect(narrow).toHaveBeenCalledTimes(1);
    expect(router.dispatch("elsewhere", Buffer.from("x"), packet)).toBe(false);
  });

  it("subscribes to every distinct filter on every connect, with No Local unless a route says otherwise", async () => {
    const subscriber = new FakeSubscriber();
    const router = new TopicRouter(subscriber, silentLogger());
    router.add("state/abc", () => undefined, { noLocal: false });
    router.add("lamp/abc/set_config", () => undefined);
    router.add("lamp/abc/set_config", () => undefined);
    await router.subscribeAll();
    await router.subscribeAll();
    expect(subscriber.calls).toEqual([
      { filter: "state/abc", noLocal: false },
      { filter: "lamp/abc/set_config", noLocal: true },
      { filter: "state/abc", noLocal: false },
      { filter: "lamp/abc/set_config", noLocal: true },
    ]);
  });

  it("retries a refused subscription with backoff, logs the first refusal at error, and resolves once granted", async () => {
    vi.useFakeTimers();
    const subscriber = new FakeSubscriber();
    subscriber.refuse.add("lamp/group/all/set_config");
    const { logger, lines } = captureLogger("debug");
    const router = new TopicRouter(subscriber, logger, { initialMs: 25, maxMs: 250 });
    router.add("lamp/group/all/set_config", () => undefined);
    let granted = false;
    void router.subscribeAll().then(() => {
      granted = true;
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(granted).toBe(false);
    const tries = subscriber.calls.length;
    expect(tries).toBeGreaterThanOrEqual(3);
    expect(lines.filter((l) => l.level === 50 && l.topic === "lamp/group/all/set_config")).toHaveLength(1);
    subscriber.refuse.clear();
    await vi.advanceTimersByTimeAsync(2000);
    expect(granted).toBe(true);
    const settled = subscriber.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(subscriber.calls.length).toBe(settled);
  });

  it("stops retrying when the connection is lost or a new connect starts afresh", async () => {
    vi.useFakeTimers();
    const subscriber = new FakeSubscriber();
    subscriber.refuse.add("a");
    const router = new TopicRouter(subscriber, silentLogger(), { initialMs: 100, maxMs: 100 });
    router.add("a", () => undefined);
    void router.subscribeAll();
    await vi.advanceTimersByTimeAsync(0);
    subscriber.connected = false;
    await vi.advanceTimersByTimeAsync(1000);
    expect(subscriber.calls).toHaveLength(1);
    subscriber.connected = true;
    void router.subscribeAll();
    router.stop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(subscriber.calls).toHaveLength(2);
  });
});

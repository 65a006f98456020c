import type { IPublishPacket } from "mqtt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { captureLogger, silentLogger } from "../../helpers/log.js";

const packet = { retain: false } as IPublishPacket;

/**
 * Refuses the filters in `refuse` at any QoS (an ACL) and those in `refuseQos1` at QoS 1 only (a NATS
 * cluster with a node down); grants the rest. Records every SUBSCRIBE with its QoS and No Local flag.
 */
class FakeSubscriber {
  connected = true;
  refuse = new Set<string>();
  refuseQos1 = new Set<string>();
  readonly calls: { filter: string; noLocal: boolean | undefined; qos: 0 | 1 | undefined }[] = [];
  subscribe(filter: string, options?: { noLocal?: boolean; qos?: 0 | 1 }): Promise<void> {
    this.calls.push({ filter, noLocal: options?.noLocal, qos: options?.qos });
    const refused = this.refuse.has(filter) || (options?.qos !== 0 && this.refuseQos1.has(filter));
    return refused ? Promise.reject(new Error("refused: unspecified error")) : Promise.resolve();
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
      { filter: "state/abc", noLocal: false, qos: 1 },
      { filter: "lamp/abc/set_config", noLocal: true, qos: 1 },
      { filter: "state/abc", noLocal: false, qos: 1 },
      { filter: "lamp/abc/set_config", noLocal: true, qos: 1 },
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
    // Each round asks for QoS 1, and for QoS 0 when that is refused too.
    const tries = subscriber.calls.filter((c) => c.qos === 1).length;
    expect(tries).toBeGreaterThanOrEqual(3);
    expect(subscriber.calls.filter((c) => c.qos === 0)).toHaveLength(tries);
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
    // QoS 1 refused, then QoS 0 refused; nothing more once the connection is gone.
    expect(subscriber.calls.map((c) => c.qos)).toEqual([1, 0]);
    subscriber.connected = true;
    void router.subscribeAll();
    router.stop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(subscriber.calls.map((c) => c.qos)).toEqual([1, 0, 1]);
  });

  it("hears at QoS 0 at once while QoS 1 is refused, says so once, and asks for QoS 1 until granted", async () => {
    vi.useFakeTimers();
    const subscriber = new FakeSubscriber();
    subscriber.refuseQos1.add("lamp/group/all/set_config");
    const { logger, lines } = captureLogger("debug");
    const router = new TopicRouter(subscriber, logger, { initialMs: 25, maxMs: 250 });
    router.add("lamp/group/all/set_config", () => undefined);
    router.add("lamp/abc/set_config", () => undefined);
    let heard = false;
    void router.subscribeAll().then(() => {
      heard = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    // Listening before any retry: the granted filter at QoS 1, the refused one at QoS 0.
    expect(heard).toBe(true);
    expect(subscriber.calls).toEqual([
      { filter: "lamp/group/all/set_config", noLocal: true, qos: 1 },
      { filter: "lamp/abc/set_config", noLocal: true, qos: 1 },
      { filter: "lamp/group/all/set_config", noLocal: true, qos: 0 },
    ]);
    const meanwhile = lines.filter((l) => l.level === 40 && l.topic === "lamp/group/all/set_config");
    expect(meanwhile).toHaveLength(1);
    expect(meanwhile[0]?.msg).toMatch(/QoS 0 until QoS 1 is granted/);
    // QoS 1 is asked for again with backoff, and QoS 0 only the once.
    await vi.advanceTimersByTimeAsync(1000);
    const group = () => subscriber.calls.filter((c) => c.filter === "lamp/group/all/set_config");
    expect(group().filter((c) => c.qos === 1).length).toBeGreaterThanOrEqual(3);
    expect(group().filter((c) => c.qos === 0)).toHaveLength(1);
    subscriber.refuseQos1.clear();
    await vi.advanceTimersByTimeAsync(1000);
    expect(
      lines.some((l) => l.msg === "subscribed after a refusal" && l.topic === "lamp/group/all/set_config"),
    ).toBe(true);
    const settled = subscriber.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(subscriber.calls.length).toBe(settled);
    expect(subscriber.calls.at(-1)).toEqual({ filter: "lamp/group/all/set_config", noLocal: true, qos: 1 });
  });
});

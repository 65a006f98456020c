import type { IPublishPacket } from "mqtt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TopicRouter } from "../../../src/mqtt/router.js";
import { captureLogger, silentLogger } from "../../helpers/log.js";

const packet = { retain: false } as IPublishPacket;

/**
 * Refuses the filters in `refuse` at any QoS (an ACL); refuses QoS 1 on those in `refuseQos1`, or on
 * every filter while `cluster` is "degraded" (a NATS cluster with a node down, which takes `refuseMs` to
 * say so); grants the rest. As NATS does, a QoS 1 SUBSCRIBE takes over the filter's subscription at once
 * and removes it when refused: `heard` is what the lamp would hear. Records every SUBSCRIBE with its QoS
 * and No Local flag.
 */
class FakeSubscriber {
  connected = true;
  refuse = new Set<string>();
  refuseQos1 = new Set<string>();
  cluster: "healthy" | "degraded" = "healthy";
  refuseMs = 0;
  readonly heard = new Map<string, 0 | 1>();
  readonly calls: { filter: string; noLocal: boolean | undefined; qos: 0 | 1 | undefined }[] = [];
  readonly unsubscribed: string[] = [];
  subscribe(filter: string, options?: { noLocal?: boolean; qos?: 0 | 1 }): Promise<void> {
    const qos = options?.qos ?? 1;
    this.calls.push({ filter, noLocal: options?.noLocal, qos: options?.qos });
    const refused =
      this.refuse.has(filter) || (qos === 1 && (this.cluster === "degraded" || this.refuseQos1.has(filter)));
    if (!refused) {
      this.heard.set(filter, qos);
      return Promise.resolve();
    }
    if (qos === 1) this.heard.delete(filter);
    const error = new Error("refused: unspecified error");
    if (this.refuseMs === 0) return Promise.reject(error);
    return new Promise((_resolve, reject) => setTimeout(() => reject(error), this.refuseMs));
  }
  unsubscribe(filter: string): Promise<void> {
    this.unsubscribed.push(filter);
    this.heard.delete(filter);
    return Promise.resolve();
  }
}

/**
 * A router with a probe on a NATS cluster with a node down: every QoS 1 SUBSCRIBE refused after 4 s,
 * the backoff the agent uses; `filters` added. Fake timers are on.
 */
function onDegradedCluster(filters: readonly string[], logger = silentLogger()) {
  vi.useFakeTimers();
  const subscriber = new FakeSubscriber();
  subscriber.cluster = "degraded";
  subscriber.refuseMs = 4000;
  const router = new TopicRouter(subscriber, logger, {
    retry: { initialMs: 500, maxMs: 15_000 },
    probe: "lamp/abc/error",
  });
  for (const filter of filters) router.add(filter, () => undefined);
  return { subscriber, router };
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
    const router = new TopicRouter(subscriber, logger, { retry: { initialMs: 25, maxMs: 250 } });
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
    const router = new TopicRouter(subscriber, silentLogger(), { retry: { initialMs: 100, maxMs: 100 } });
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
    const router = new TopicRouter(subscriber, logger, { retry: { initialMs: 25, maxMs: 250 } });
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
    // QoS 1 is asked for again with backoff (no probe here: on the filter itself), and after each
    // refusal QoS 0 again, since the refusal may have taken the subscription with it.
    await vi.advanceTimersByTimeAsync(1000);
    const group = () => subscriber.calls.filter((c) => c.filter === "lamp/group/all/set_config");
    expect(group().filter((c) => c.qos === 1).length).toBeGreaterThanOrEqual(3);
    expect(group().filter((c) => c.qos === 0)).toHaveLength(group().filter((c) => c.qos === 1).length);
    expect(subscriber.heard.get("lamp/group/all/set_config")).toBe(0);
    subscriber.refuseQos1.clear();
    await vi.advanceTimersByTimeAsync(1000);
    expect(
      lines.some((l) => l.msg === "subscribed after a refusal" && l.topic === "lamp/group/all/set_config"),
    ).toBe(true);
    const settled = subscriber.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(subscriber.calls.length).toBe(settled);
    expect(subscriber.calls.at(-1)).toEqual({ filter: "lamp/group/all/set_config", noLocal: true, qos: 1 });
    expect(subscriber.heard.get("lamp/group/all/set_config")).toBe(1);
  });

  it("never goes deaf while a NATS cluster refuses QoS 1: asks the probe, and the filters only once it is granted", async () => {
    const { logger, lines } = captureLogger("debug");
    const filters = ["state/abc", "lamp/abc/set_config", "lamp/group/all/set_config"];
    const { subscriber, router } = onDegradedCluster(filters, logger);
    void router.subscribeAll();
    // NATS answers one refusal after another, 4 s each (this fake answers them side by side).
    await vi.advanceTimersByTimeAsync(4000);
    expect([...subscriber.heard.keys()].sort()).toEqual([...filters].sort());
    // Two minutes of a degraded cluster, looked at every 100 ms: every filter is heard throughout, and
    // QoS 1 is asked for on the probe alone.
    const asked = subscriber.calls.length;
    for (let t = 0; t < 120_000; t += 100) {
      await vi.advanceTimersByTimeAsync(100);
      for (const filter of filters) expect(subscriber.heard.get(filter), `${filter} at ${t} ms`).toBe(0);
    }
    const retries = subscriber.calls.slice(asked);
    expect(retries.filter((c) => c.filter === "lamp/abc/error" && c.qos === 1).length).toBeGreaterThanOrEqual(
      5,
    );
    expect(retries.filter((c) => c.filter !== "lamp/abc/error")).toEqual([]);
    // Told apart from an ACL once: the probe at QoS 0, granted, and ended at once.
    expect(retries.filter((c) => c.qos === 0)).toEqual([
      { filter: "lamp/abc/error", noLocal: undefined, qos: 0 },
    ]);
    expect(subscriber.heard.has("lamp/abc/error")).toBe(false);
    // The cluster is whole again: within one backoff ceiling and a refusal, the probe is granted and
    // ended, and every filter has QoS 1.
    subscriber.cluster = "healthy";
    await vi.advanceTimersByTimeAsync(20_000);
    for (const filter of filters) expect(subscriber.heard.get(filter)).toBe(1);
    expect(subscriber.heard.has("lamp/abc/error")).toBe(false);
    expect(lines.filter((l) => l.msg === "subscribed after a refusal").map((l) => l.topic)).toEqual(filters);
    const settled = subscriber.calls.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(subscriber.calls.length).toBe(settled);
  });

  it("hears a filter at QoS 0 again at once when it is refused after the probe was granted", async () => {
    vi.useFakeTimers();
    const subscriber = new FakeSubscriber();
    subscriber.refuseQos1.add("lamp/abc/set_config");
    const router = new TopicRouter(subscriber, silentLogger(), {
      retry: { initialMs: 25, maxMs: 250 },
      probe: "lamp/abc/error",
    });
    router.add("lamp/abc/set_config", () => undefined);
    void router.subscribeAll();
    for (let t = 0; t < 2000; t += 10) {
      await vi.advanceTimersByTimeAsync(10);
      expect(subscriber.heard.get("lamp/abc/set_config")).toBe(0);
    }
    const asked = subscriber.calls.filter((c) => c.filter === "lamp/abc/set_config");
    expect(asked.filter((c) => c.qos === 1).length).toBeGreaterThanOrEqual(3);
    expect(asked.filter((c) => c.qos === 0)).toHaveLength(asked.filter((c) => c.qos === 1).length);
    expect(subscriber.unsubscribed.length).toBeGreaterThanOrEqual(3);
    expect(new Set(subscriber.unsubscribed)).toEqual(new Set(["lamp/abc/error"]));
  });

  it("asks the filters themselves when an ACL forbids the probe, and says so once", async () => {
    vi.useFakeTimers();
    const subscriber = new FakeSubscriber();
    subscriber.cluster = "degraded";
    subscriber.refuse.add("lamp/abc/error");
    const { logger, lines } = captureLogger("debug");
    const router = new TopicRouter(subscriber, logger, {
      retry: { initialMs: 25, maxMs: 250 },
      probe: "lamp/abc/error",
    });
    router.add("lamp/abc/set_config", () => undefined);
    void router.subscribeAll();
    await vi.advanceTimersByTimeAsync(2000);
    const probes = subscriber.calls.filter((c) => c.filter === "lamp/abc/error");
    expect(probes.map((c) => c.qos)).toEqual([1, 0]);
    expect(lines.filter((l) => /probe topic too/.test(l.msg))).toHaveLength(1);
    const asked = subscriber.calls.filter((c) => c.filter === "lamp/abc/set_config");
    expect(asked.filter((c) => c.qos === 1).length).toBeGreaterThanOrEqual(3);
    expect(asked.filter((c) => c.qos === 0)).toHaveLength(asked.filter((c) => c.qos === 1).length);
    expect(subscriber.heard.get("lamp/abc/set_config")).toBe(0);
    subscriber.cluster = "healthy";
    await vi.advanceTimersByTimeAsync(1000);
    expect(subscriber.heard.get("lamp/abc/set_config")).toBe(1);
  });

  it("on a kept session asks for QoS 0 again where the last connection heard at QoS 0, and stays hearing", async () => {
    const { subscriber, router } = onDegradedCluster(["lamp/abc/set_config"]);
    void router.subscribeAll();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(subscriber.heard.get("lamp/abc/set_config")).toBe(0);
    // Reconnected, the session kept (its QoS 0 subscription with it): not asked for QoS 1 on the filter.
    subscriber.calls.length = 0;
    let heard = false;
    void router.subscribeAll({ sessionPresent: true }).then(() => {
      heard = true;
    });
    for (let t = 0; t < 60_000; t += 100) {
      await vi.advanceTimersByTimeAsync(100);
      expect(subscriber.heard.get("lamp/abc/set_config"), `at ${t} ms`).toBe(0);
    }
    expect(heard).toBe(true);
    const onFilter = subscriber.calls.filter((c) => c.filter === "lamp/abc/set_config");
    expect(onFilter).toEqual([{ filter: "lamp/abc/set_config", noLocal: true, qos: 0 }]);
    subscriber.cluster = "healthy";
    await vi.advanceTimersByTimeAsync(20_000);
    expect(subscriber.heard.get("lamp/abc/set_config")).toBe(1);
    // A new session holds nothing: every filter is asked for at QoS 1 first.
    subscriber.calls.length = 0;
    await router.subscribeAll({ sessionPresent: false });
    expect(subscriber.calls).toEqual([{ filter: "lamp/abc/set_config", noLocal: true, qos: 1 }]);
  });

  it("starts afresh on a new connect: no probe or retry from the old one carries over", async () => {
    const { subscriber, router } = onDegradedCluster(["lamp/abc/set_config"]);
    void router.subscribeAll();
    await vi.advanceTimersByTimeAsync(30_000);
    subscriber.cluster = "healthy";
    subscriber.refuseMs = 0;
    subscriber.heard.clear();
    subscriber.calls.length = 0;
    await router.subscribeAll();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(subscriber.calls).toEqual([{ filter: "lamp/abc/set_config", noLocal: true, qos: 1 }]);
    expect(subscriber.heard.get("lamp/abc/set_config")).toBe(1);
  });
});

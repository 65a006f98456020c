// A slow broker: the link to it adds latency and caps throughput while a flood of commands comes in.
// Whatever the agent sends (state, acknowledgements) must not pile up inside it. The agent runs in this
// process so what its connection holds can be sampled throughout: the publishes awaiting the broker's
// acknowledgement, the offline queue and the bytes buffered on the socket.
import { beforeAll, describe, expect, it, vi } from "vitest";
import { startAgent } from "../helpers/agent.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { teardown } from "../helpers/teardown.js";

const COMMANDS = 3000;

const track = teardown("all");
let broker: TestBroker;
let proxy: TcpProxy;

beforeAll(async () => {
  broker = track(await startBroker());
  proxy = track(await new TcpProxy(broker.port).start());
});

describe("a slow broker", () => {
  it(`keeps what the agent holds bounded while ${COMMANDS} commands flood in, and ends on the last one`, async () => {
    const { agent, driver, id } = track(await startAgent(proxy.url, { GAMMA: "1" }));
    const base = `lamp/${id}`;
    const seen = track(await Recorder.connect(broker.url, [`state/${id}`, `${base}/changed`]));
    await seen.wait(`state/${id}`, (t) => t === "1");
    await seen.wait(`${base}/changed`);
    await sleep(200);
    seen.clear();

    proxy.slow({ latencyMs: 100, bytesPerSecond: 64 * 1024 });
    const peak = { outgoing: 0, queue: 0, buffered: 0 };
    const sampler = setInterval(() => {
      const pending = agent.mqtt?.pending;
      if (!pending) return;
      peak.outgoing = Math.max(peak.outgoing, pending.awaitingAck);
      peak.queue = Math.max(peak.queue, pending.queued);
      peak.buffered = Math.max(peak.buffered, pending.bufferedBytes);
    }, 10);
    try {
      // A slider dragged without pause: QoS 0, every command a change, the last one distinct.
      for (let i = 0; i < COMMANDS; i++) {
        const brightness = i === COMMANDS - 1 ? 0.99 : ((i % 98) + 1) / 100;
        seen.client.publish(
          `${base}/set_config`,
          JSON.stringify({ on: true, color: { h: 0, s: 0 }, brightness, client: "slider" }),
          { qos: 0 },
        );
      }
      await seen.wait(`${base}/changed`, (t) => JSON.parse(t).brightness === 0.99, 60_000);
      await vi.waitFor(() => expect(driver.duties).toEqual([0.99, 0.99, 0.99]), { timeout: 5000 });
    } finally {
      clearInterval(sampler);
    }

    // One state publish in flight at a time (plus, at most, one more being acknowledged as it is
    // replaced); an agent publishing every change would have had thousands waiting here.
    expect(peak.outgoing).toBeLessThanOrEqual(2);
    expect(peak.queue).toBe(0);
    expect(peak.buffered).toBeLessThan(4096);
    const states = seen.on(`${base}/changed`).length;
    expect(states).toBeGreaterThan(0);
    expect(states).toBeLessThan(COMMANDS / 10);
    expect(agent.state?.brightness).toBe(0.99);
  }, 90_000);
});

// Two Pis with one LAMP_ID: each agent's CONNECT takes the other's session. Mosquitto 2.0 closes the
// loser's socket without the MQTT 5 DISCONNECT 0x8E, exactly as it does when it stops, so the agent has
// to tell the two apart by what follows. Both agents run as real processes on a real Mosquitto.
import { describe, expect, it, vi } from "vitest";
import { type AgentProcess, spawnAgent } from "../helpers/agent-process.js";
import { startBroker } from "../helpers/broker.js";
import type { LogLine } from "../helpers/log.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { teardown } from "../helpers/teardown.js";

const track = teardown("each");
// The wait between tries once taken over (MQTT_TAKEOVER_RETRY_MS, 5 minutes by default), shortened.
const MAX_MS = 3000;
const backoff = {
  MQTT_RECONNECT_MIN_MS: "100",
  MQTT_RECONNECT_MAX_MS: "1000",
  MQTT_TAKEOVER_RETRY_MS: String(MAX_MS),
};

const isTakeover = (l: LogLine) => /took the session over/.test(l.msg);
const connects = (agent: AgentProcess) => agent.logs.filter((l) => l.msg === "connected to the broker");

describe.each(["5", "3.1.1"])("MQTT %s", (protocol) => {
  const env = { ...backoff, MQTT_PROTOCOL: protocol };

  it("two agents with one client id: the takeover is logged once with the fix, and the pair settles", async () => {
    const broker = track(await startBroker());
    const id = `twin${protocol.replaceAll(".", "")}x${process.pid}`;
    const watcher = track(await Recorder.connect(broker.url, [`state/${id}`]));
    const first = track(spawnAgent(broker.url, env, { id }));
    await vi.waitFor(() => expect(connects(first)).toHaveLength(1), { timeout: 10_000, interval: 50 });
    const second = track(spawnAgent(broker.url, env, { id }));
    const pair = [first, second];

    await vi.waitFor(() => expect(pair.every((a) => a.logs.some(isTakeover))).toBe(true), {
      timeout: 20_000,
      interval: 50,
    });
    const [line] = pair.flatMap((a) => a.logs.filter(isTakeover));
    expect(line?.level).toBe(50);
    expect(line?.msg).toMatch(/LAMP_ID \(or MQTT_CLIENT_ID\)/);

    // Whatever the broker says on a takeover (Mosquitto: nothing), each reads the other's info, retained
    // since its own, when it connects again.
    const readOther = (a: AgentProcess) =>
      a.logs.some((l) => l.msg === "another process published this lamp's info");
    await vi.waitFor(() => expect(pair.every(readOther)).toBe(true), { timeout: 10_000, interval: 50 });

    // A few takeovers in a row at the longest reconnect delay make it sure (a broker restarted twice
    // within seconds looks the same on 3.1.1); then the long wait, MQTT_TAKEOVER_RETRY_MS, begins.
    const settledWait = (a: AgentProcess) =>
      a.logs.some((l) => l.msg === "reconnecting" && Number(l.inMs) >= MAX_MS);
    await vi.waitFor(() => expect(pair.every(settledWait)).toBe(true), { timeout: 20_000, interval: 50 });
    // Settled: from here on each waits MQTT_TAKEOVER_RETRY_MS before taking the session back, so the
    // two swap about once per MAX_MS instead of fighting every 100 ms.
    const total = () => connects(first).length + connects(second).length;
    const before = total();
    const from = pair.map((a) => a.logs.length);
    await vi.waitFor(() => expect(total()).toBeGreaterThanOrEqual(before + 2), {
      timeout: 4 * MAX_MS,
      interval: 50,
    });
    pair.forEach((agent, i) => {
      const since = agent.logs.slice(from[i]);
      const delays = since.filter((l) => l.msg === "reconnecting").map((l) => Number(l.inMs));
      for (const delay of delays) expect(delay).toBeGreaterThanOrEqual(0.8 * MAX_MS);
      expect(since.filter((l) => /lost the broker connection/.test(l.msg))).toEqual([]);
      // Logged once, however often it happens.
      expect(agent.logs.filter(isTakeover)).toHaveLength(1);
    });
    // Presence never stays 0 while one of them runs: a takeover's Will (0) is followed by the winner's 1.
    await vi.waitFor(() => expect(watcher.on(`state/${id}`).at(-1)?.text).toBe("1"), { timeout: 2 * MAX_MS });
  }, 60_000);

  it("a broker that stops (twice, soon after a connect) is not reported as a takeover", async () => {
    const broker = track(await startBroker());
    const agent = track(spawnAgent(broker.url, env));
    for (let round = 1; round <= 2; round++) {
      await vi.waitFor(() => expect(connects(agent)).toHaveLength(round), { timeout: 10_000, interval: 50 });
      await broker.stop();
      // The broker is down for a few attempts; each one fails.
      await vi.waitFor(
        () => expect(agent.logs.filter((l) => l.msg === "reconnecting").length).toBeGreaterThan(round * 3),
        { timeout: 10_000, interval: 50 },
      );
      await broker.restart();
    }
    await vi.waitFor(() => expect(connects(agent)).toHaveLength(3), { timeout: 10_000, interval: 50 });
    const text = JSON.stringify(agent.logs);
    expect(text).not.toMatch(/took the session over|client id/i);
  }, 60_000);
});

// Twenty broker restarts in a row, with and without broker persistence. The agent runs as a real
// process; its reconnect backoff is shortened (MQTT_RECONNECT_*), since twenty restarts well inside the
// 10 s it takes to count a connection as stable would otherwise climb to the 60 s ceiling. That growth is
// intended in the field (a flapping broker is not hammered); here it would only make the test slow.
import { describe, expect, it, vi } from "vitest";
import { showing, spawnAgent, white } from "../helpers/agent-process.js";
import { startBroker } from "../helpers/broker.js";
import { type Received, Recorder } from "../helpers/mqtt-client.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { teardown } from "../helpers/teardown.js";

const RESTARTS = 20;
const track = teardown("each");

/** A message delivered live (not a retained copy from before the restart). */
function live(recorder: Recorder, topic: string, match: (text: string) => boolean): Promise<Received> {
  return vi.waitFor(
    () => {
      const found = recorder.messages.find((m) => m.topic === topic && !m.retain && match(m.text));
      if (!found) throw new Error(`no live message on ${topic} yet`);
      return found;
    },
    { timeout: 10_000, interval: 20 },
  );
}

describe.each([
  ["without broker persistence", false],
  ["with broker persistence", true],
])("%s", (_name, persistence) => {
  it(`reconnects after each of ${RESTARTS} broker restarts, re-announces presence and state, and obeys a command each time`, async () => {
    const broker = track(
      await startBroker({
        config: persistence
          ? ["persistence true", "persistence_location {dir}/", "autosave_interval 3600"]
          : [],
      }),
    );
    // The proxy only sequences each round: the agent cannot reconnect before the watcher listens again.
    const proxy = track(await new TcpProxy(broker.port).start());
    const lamp = track(spawnAgent(proxy.url, { MQTT_RECONNECT_MIN_MS: "50", MQTT_RECONNECT_MAX_MS: "400" }));
    const presence = `state/${lamp.id}`;
    const base = `lamp/${lamp.id}`;
    const state = (text: string) => JSON.parse(text) as { client: string; brightness: number };
    let watcher = await Recorder.connect(broker.url, [presence, `${base}/changed`]);
    // The watcher is replaced every round: end whichever is current.
    track(() => watcher.end().catch(() => undefined));
    await watcher.wait(presence, (t) => t === "1", 15_000);

    for (let round = 1; round <= RESTARTS; round++) {
      proxy.refuse();
      await watcher.end().catch(() => undefined);
      await broker.stop();
      await broker.restart();
      watcher = await Recorder.connect(broker.url, [presence, `${base}/changed`]);
      proxy.restore();
      const up = await live(watcher, presence, (t) => t === "1");
      const announced = await live(watcher, `${base}/changed`, (t) => state(t).client === `lamp-${lamp.id}`);
      expect(announced.at).toBeGreaterThanOrEqual(up.at);
      // The subscription works (re-made, or kept in the persisted session).
      const brightness = (50 + round) / 100;
      await watcher.publish(`${base}/set_config`, white(brightness, `round${round}`));
      const changed = await watcher.wait(`${base}/changed`, (t) => state(t).client === `round${round}`);
      expect(state(changed.text).brightness).toBe(brightness);
    }

    await vi.waitFor(() => expect(showing(lamp.duties(), (50 + RESTARTS) / 100)).toBe(true));
    const connects = lamp.logs.filter((l) => l.msg === "connected to the broker");
    expect(connects).toHaveLength(RESTARTS + 1);
    // Proof the variant is what it says: a persistent broker kept the agent's session through restarts.
    expect(connects.slice(1).every((l) => l.sessionPresent === persistence)).toBe(true);
    expect(lamp.child.exitCode).toBeNull();
    expect(lamp.logs.filter((l) => l.level >= 60)).toEqual([]);
  }, 120_000);
});

// A connection dropped soon after its CONNACK, twice in a row, with no failed try in between: a cluster
// node moving its sessions after losing a peer (a NATS survivor did so in CI), or a link that breaks.
// Nobody else has this client id. Each drop leaves our own Will queued in the kept session, which comes
// as we reconnect just as a twin's Will would on Aedes: it once read as one, and two drops made the
// agent sure of a takeover, waiting MQTT_TAKEOVER_RETRY_MS (5 minutes by default). Twins are now told
// by their info (features/info.ts), which the fleet's twins check covers on both engines, and on one
// broker also by quick closes (mqtt/takeover.ts), which this test allows for.
import { describe, expect, it, vi } from "vitest";
import { type AgentProcess, spawnAgent } from "../helpers/agent-process.js";
import { startBroker } from "../helpers/broker.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { teardown } from "../helpers/teardown.js";

const track = teardown("each");
const connects = (agent: AgentProcess) => agent.logs.filter((l) => l.msg === "connected to the broker");
const MAX_MS = 4000;

describe.each([
  // One broker: two quick closes stay a guess of a takeover there (nothing else tells on 3.1.1), which
  // costs at most the longest reconnect delay, never MQTT_TAKEOVER_RETRY_MS.
  { nodes: 1, backWithinMs: MAX_MS * 1.2 + 3000 },
  // A cluster: no guess at all, back at once on the next node.
  { nodes: 2, backWithinMs: 3000 },
])("$nodes node(s)", ({ nodes, backWithinMs }) => {
  it("drops soon after the CONNACK, three in a row: never taken for a twin", async () => {
    const broker = track(await startBroker());
    const proxies = await Promise.all(
      Array.from({ length: nodes }, async () => track(await new TcpProxy(broker.port).start())),
    );
    const agent = track(
      spawnAgent(proxies.map((p) => `mqtt://127.0.0.1:${p.port}`).join(","), {
        MQTT_PROTOCOL: "3.1.1",
        MQTT_RECONNECT_MIN_MS: "100",
        MQTT_RECONNECT_MAX_MS: String(MAX_MS),
        MQTT_TAKEOVER_RETRY_MS: "120000",
      }),
    );
    await vi.waitFor(() => expect(connects(agent)).toHaveLength(1), { timeout: 10_000, interval: 50 });
    // From here on each drop is of a session the broker keeps, and leaves our Will queued in it.
    for (let round = 2; round <= 4; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      for (const proxy of proxies) proxy.cut();
      await vi.waitFor(() => expect(connects(agent)).toHaveLength(round), {
        timeout: backWithinMs,
        interval: 50,
      });
    }
    const sure = agent.logs.filter((l) => Number(l.inMs) >= 120_000);
    expect(sure, "a wait of MQTT_TAKEOVER_RETRY_MS").toEqual([]);
    if (nodes > 1) expect(JSON.stringify(agent.logs)).not.toMatch(/took the session over/);
  }, 60_000);
});

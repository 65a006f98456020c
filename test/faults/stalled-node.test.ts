// A cluster node that holds a CONNECT past the agent's connect timeout and then processes it anyway (NATS
// while JetStream loads). The agent has moved on to another node by then; the late connection must end
// without firing the lamp's Will, or the lamp reads offline (a retained `0`) while it is live elsewhere.
import net from "node:net";
import mqttPacket, { type Packet } from "mqtt-packet";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type ConnectInfo, type ConnectionOptions, MqttConnection } from "../../src/mqtt/connection.js";
import { TopicRouter } from "../../src/mqtt/router.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { HoldingProxy } from "../helpers/holding-proxy.js";
import { captureLogger, silentLogger } from "../helpers/log.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { RefusingBroker } from "../helpers/refusing-broker.js";
import { teardown } from "../helpers/teardown.js";

const HOLD_MS = 1500;
const CONNECT_TIMEOUT_MS = 400;
/** A lamp's filters, as the router subscribes to them. */
const FILTERS = ["lamp/x/set_config", "lamp/group/all/set_config", "state/x", "lamp/x/info"];

const track = teardown("each");
let held: TestBroker;
let other: TestBroker;

beforeAll(async () => {
  [held, other] = await Promise.all([startBroker(), startBroker()]);
  return async () => {
    await Promise.all([held.close(), other.close()]);
  };
});

function packets(bytes: Buffer): Packet["cmd"][] {
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const cmds: Packet["cmd"][] = [];
  parser.on("packet", (packet: Packet) => cmds.push(packet.cmd));
  parser.parse(bytes);
  return cmds;
}

/**
 * The agent's connection for lamp `id` on MQTT_URL `urls`, tried in the order written (random 0.99 keeps
 * it), with a short backoff; its connects and log lines. `onConnect` runs after each connect is counted.
 */
function lampConnection(
  urls: string,
  id: string,
  timeouts: Pick<ConnectionOptions, "connectTimeoutMs" | "subackTimeoutMs"> = {
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
  },
  onConnect: (info: ConnectInfo, connection: MqttConnection) => void = () => undefined,
  env: Record<string, string> = {},
) {
  const { config } = loadConfig({
    dotenv: false,
    env: { MQTT_URL: urls, LAMP_ID: id, GPIO_DRIVER: "mock", ...env },
  });
  const { logger, lines } = captureLogger("debug");
  const connects: ConnectInfo[] = [];
  const connection: MqttConnection = new MqttConnection(
    config,
    {
      onConnect: (info) => {
        connects.push(info);
        onConnect(info, connection);
      },
      onMessage: () => undefined,
    },
    logger,
    { random: () => 0.99, backoff: { initialMs: 10, maxMs: 50 }, ...timeouts },
  );
  return { connection, connects, lines };
}

describe("a node that holds the CONNECT past the connect timeout", () => {
  it("gets a DISCONNECT after it, so the late connection fires no Will while the lamp is live on another node", async () => {
    const proxy = track(await new HoldingProxy(held.port, HOLD_MS).start());
    const id = `stall${process.pid}`;
    const watcher = track(await Recorder.connect(held.url, [`state/${id}`]));
    // The holding node first.
    const { connection, connects, lines } = lampConnection(`${proxy.url},${other.url}`, id);
    track({ stop: () => connection.stop() });
    connection.start();

    await expect.poll(() => connects.map((c) => c.node), { timeout: 5000 }).toEqual([other.url]);
    expect(lines.map((l) => String(l.cause ?? ""))).toContainEqual(
      expect.stringContaining(`did not answer its MQTT CONNECT within ${CONNECT_TIMEOUT_MS / 1000} s`),
    );
    // The held node reads the CONNECT, then the DISCONNECT that followed it on the same connection.
    await sleep(HOLD_MS + 1000);
    expect(watcher.on(`state/${id}`).map((m) => m.text)).toEqual([]);
    expect(proxy.sent.map(packets)[0]).toEqual(["connect", "disconnect"]);
    expect(connection.connected).toBe(true);
  });

  it("a node that takes the connection but never answers the TLS handshake is left too, and stop() closes it", async () => {
    const silent = net.createServer();
    const open = new Set<net.Socket>();
    silent.on("connection", (socket) => {
      open.add(socket);
      // Read (and drop) what comes, so the client's close is seen.
      socket.resume();
      socket.on("close", () => open.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    track({ close: () => new Promise((resolve) => silent.close(resolve)) });
    const { port } = silent.address() as net.AddressInfo;
    const { connection, connects } = lampConnection(
      `mqtts://127.0.0.1:${port},${other.url}`,
      `tls${process.pid}`,
    );
    connection.start();
    await expect.poll(() => connects.map((c) => c.node), { timeout: 5000 }).toEqual([other.url]);
    expect(open.size).toBe(1);
    await connection.stop();
    await expect.poll(() => open.size).toBe(0);
  });

  it("a node that never answers a SUBSCRIBE is left with a DISCONNECT, and the lamp subscribes on another", async () => {
    const silent = track(await new RefusingBroker("silent").start());
    const subscribed: string[] = [];
    const refused: string[] = [];
    const { connection, lines } = lampConnection(
      `${silent.url},${other.url}`,
      `deaf${process.pid}`,
      { subackTimeoutMs: 300 },
      (info, connection) => {
        connection.subscribe("lamp/x/set_config").then(
          () => subscribed.push(info.node),
          (error: Error) => refused.push(`${info.node}: ${error.message}`),
        );
      },
    );
    track({ stop: () => connection.stop() });
    connection.start();
    await expect.poll(() => subscribed, { timeout: 5000 }).toEqual([other.url]);
    expect(refused).toEqual([`${silent.url}: no answer from the broker`]);
    expect(lines.map((l) => l.msg)).toContainEqual(
      expect.stringContaining("the broker did not answer our subscription within 0.3 s"),
    );
    await expect.poll(() => silent.received[0]).toEqual(["connect", "subscribe", "disconnect"]);
  });

  /** A lamp whose router subscribes to four filters on every connect; `listening()` once all are heard. */
  function routedLamp(
    url: string,
    id: string,
    timeouts: Pick<ConnectionOptions, "subackTimeoutMs">,
    env: Record<string, string> = {},
  ) {
    let listening = false;
    const lamp = lampConnection(
      url,
      id,
      timeouts,
      (_info, connection) => {
        const router = new TopicRouter(connection, silentLogger(), {
          retry: { initialMs: 5000, maxMs: 5000 },
        });
        for (const filter of FILTERS) router.add(filter, () => undefined);
        void router.subscribeAll().then(() => {
          listening = true;
        });
      },
      env,
    );
    track({ stop: () => lamp.connection.stop() });
    lamp.connection.start();
    return { ...lamp, listening: () => listening };
  }

  it("a node that answers SUBSCRIBEs one at a time, refusing QoS 1 slowly, is kept, and the lamp listens at QoS 0", async () => {
    // NATS with a node of its cluster down: 4 s per refused QoS 1 SUBSCRIBE, one after another. Scaled
    // down: 200 ms each against a 300 ms SUBACK timeout, so the third and fourth wait longer than it.
    const slow = track(await new RefusingBroker("qos0-only", 200).start());
    const { connects, lines, listening } = routedLamp(slow.url, `slow${process.pid}`, {
      subackTimeoutMs: 300,
    });
    await expect.poll(listening, { timeout: 5000 }).toBe(true);
    expect(connects).toHaveLength(1);
    expect(lines.map((l) => l.msg)).not.toContainEqual(
      expect.stringContaining("did not answer our subscription"),
    );
    // Every filter asked for at QoS 1, refused, then granted at QoS 0, on the one connection.
    expect(slow.received).toHaveLength(1);
    expect(slow.received[0]?.filter((cmd) => cmd === "subscribe")).toHaveLength(2 * FILTERS.length);
  });

  it("a node slow to answer SUBSCRIBEs is not taken for dead: each SUBACK counts as a sign of life, as a PINGRESP does", async () => {
    // NATS with a node of its cluster down answers the PINGREQ only after the SUBSCRIBEs before it, 4 s
    // for each QoS 1 one it refuses: a 10 s keepalive gave up on such a node after three (seen in CI),
    // and that node, processing later what the lamp had queued there, published its Will while the lamp
    // was live on the next. Scaled down: a 1 s keepalive (PINGREQ after 1 s quiet, given up 0.5 s
    // later), 600 ms per refusal.
    const slow = track(await new RefusingBroker("qos0-only", 600).start());
    const { connection, connects, lines, listening } = routedLamp(
      slow.url,
      `busy${process.pid}`,
      {},
      { MQTT_KEEPALIVE: "1" },
    );
    await expect.poll(listening, { timeout: 5000 }).toBe(true);
    // Past the refusals (2.4 s) and a full keepalive round after them.
    await sleep(2000);
    expect(lines.map((l) => String(l.cause ?? ""))).not.toContainEqual(expect.stringContaining("Keepalive"));
    expect(connects).toHaveLength(1);
    expect(slow.received).toHaveLength(1);
    // The keepalive did run: a PINGREQ was sent, and answered.
    expect(slow.received[0]).toContain("pingreq");
    expect(connection.connected).toBe(true);
  });
});

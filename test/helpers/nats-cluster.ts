import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "./broker.js";
import {
  NATS_SERVER,
  nodeAt,
  type ProbeAuth,
  retryingPortClash,
  type TestCluster,
  waitMqttReady,
} from "./cluster.js";
import { nodeSet, spawnNode } from "./cluster-node.js";

/** One connection in a node's `/connz` monitoring answer (only the fields the tests read). */
export interface NatsConnection {
  readonly cid: number;
  /** Set on MQTT connections: the MQTT client id. */
  readonly mqtt_client?: string;
  readonly ip: string;
  readonly port: number;
}

export interface NatsCluster extends TestCluster {
  readonly engine: "nats";
  /** The node's `/connz` (its connections, each MQTT one with its `mqtt_client`). */
  connz(i: number): Promise<{ connections: NatsConnection[] }>;
  /** The generated nats-server.conf of node i, as docs/fleet.md shows it. */
  config(i: number): string;
}

interface NatsPorts {
  readonly client: number;
  readonly cluster: number;
  readonly mqtt: number;
  readonly http: number;
}

/** A node's config: its name, its own JetStream store, the routes to every node, MQTT and monitoring. */
export function natsConfig(
  name: string,
  ports: NatsPorts,
  routes: readonly number[],
  storeDir: string,
  extra: readonly string[] = [],
  replicas = Math.min(3, routes.length),
  mqtt: readonly string[] = [],
): string {
  return [
    `server_name: ${name}`,
    `listen: 127.0.0.1:${ports.client}`,
    `http: 127.0.0.1:${ports.http}`,
    `jetstream { store_dir: "${storeDir}" }`,
    // A lone node is a plain server: in a cluster of one, JetStream waits for routes that never come.
    ...(routes.length > 1
      ? [
          "cluster {",
          "  name: lamps",
          `  listen: 127.0.0.1:${ports.cluster}`,
          `  routes: [${routes.map((port) => `nats-route://127.0.0.1:${port}`).join(", ")}]`,
          "}",
        ]
      : []),
    // Every MQTT stream on every node: created while the cluster forms, they could otherwise end up with
    // one replica, on the node a test then kills.
    `mqtt { ${[`listen: 127.0.0.1:${ports.mqtt}`, `stream_replicas: ${replicas}`, `consumer_replicas: ${replicas}`, ...mqtt].join(", ")} }`,
    ...extra,
    "",
  ].join("\n");
}

async function freePorts(): Promise<NatsPorts> {
  return {
    client: await freePort(),
    cluster: await freePort(),
    mqtt: await freePort(),
    http: await freePort(),
  };
}

/**
 * A real NATS cluster of `nodes` nodes on loopback, each with its MQTT listener on JetStream. Resolves
 * once every node has passed an MQTT round trip (JetStream needs the cluster formed first: about 5 s).
 */
export interface NatsClusterOptions {
  readonly nodes?: number;
  /** More lines for every node's config (an `authorization` block, say; `include` paths are relative to it). */
  readonly config?: readonly string[];
  /** More fields for every node's `mqtt` block (`max_ack_pending: 40000`, say). */
  readonly mqtt?: readonly string[];
  /** The user the readiness probe logs in as, when `config` requires one. */
  readonly probeAuth?: ProbeAuth;
}

export function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  return retryingPortClash(() => startOnce(options));
}

async function startOnce(options: NatsClusterOptions): Promise<NatsCluster> {
  const count = options.nodes ?? 3;
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-nats-"));
  const ports: NatsPorts[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePorts());
  const routes = ports.map((p) => p.cluster);
  const configs = ports.map((p, i) => {
    const storeDir = path.join(dir, `n${i}`, "jetstream");
    mkdirSync(storeDir, { recursive: true });
    const config = natsConfig(`n${i}`, p, routes, storeDir, options.config, undefined, options.mqtt);
    writeFileSync(path.join(dir, `n${i}`, "nats-server.conf"), config);
    return config;
  });
  const urls = ports.map((p) => `mqtt://127.0.0.1:${p.mqtt}`);
  const nodes = nodeSet({
    engine: "nats",
    count,
    spawn: (i) => spawnNode(NATS_SERVER, ["-c", path.join(dir, `n${i}`, "nats-server.conf")]),
    port: (i) => nodeAt(ports, i).mqtt,
    ready: (i) => waitMqttReady(nodeAt(urls, i), 90_000, options.probeAuth),
  });
  const connz = async (i: number): Promise<{ connections: NatsConnection[] }> => {
    const response = await fetch(`http://127.0.0.1:${nodeAt(ports, i).http}/connz?limit=100000`);
    if (!response.ok) throw new Error(`connz of node ${i}: HTTP ${response.status}`);
    const body = (await response.json()) as { connections?: NatsConnection[] | null };
    return { connections: body.connections ?? [] };
  };
  const clientsOf = async (i: number): Promise<string[]> => {
    if (nodes.pid(i) === undefined) return [];
    const { connections } = await connz(i);
    return connections.flatMap((c) => (c.mqtt_client ? [c.mqtt_client] : []));
  };
  const cluster: NatsCluster = {
    engine: "nats",
    urls,
    mqttUrl: urls.join(","),
    url: (i) => nodeAt(urls, i),
    pid: nodes.pid,
    config: (i) => nodeAt(configs, i),
    connz,
    clientsOf,
    async nodeOfClient(clientId) {
      for (let i = 0; i < count; i++) if ((await clientsOf(i)).includes(clientId)) return i;
      return undefined;
    },
    kill: nodes.kill,
    start: nodes.start,
    stopAll: nodes.stopAll,
    restartAll: nodes.restartAll,
    async close() {
      await nodes.stopAll("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await nodes.startAll();
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}

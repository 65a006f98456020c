import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, waitForPort } from "./broker.js";
import { nodeAt, retryingPortClash, type TestCluster, waitMqttReady } from "./cluster.js";
import { type NodeProcess, nodeSet, spawnNode } from "./cluster-node.js";

const NODE_SCRIPT = fileURLToPath(new URL("./aedes-node.mjs", import.meta.url));

export interface AedesCluster extends TestCluster {
  readonly engine: "aedes";
  readonly redisPort: number;
  /** Aedes' heartbeatInterval on every node: a dead node's Wills come 3 to 7 of these after its death. */
  readonly heartbeatInterval: number;
}

export interface AedesClusterOptions {
  readonly nodes?: number;
  /**
   * Milliseconds; 1000 by default so a late Will shows within seconds in a test. Aedes' own default is
   * 60000, which puts the Wills of a dead node minutes late.
   */
  readonly heartbeatInterval?: number;
}

/** Redis on a free port in its own temp dir, nothing saved: the cluster's shared store and bus. */
async function startRedis(dir: string): Promise<{ port: number; node: NodeProcess }> {
  const port = await freePort();
  const node = spawnNode("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "no",
  ]);
  try {
    await waitForPort(port);
  } catch (error) {
    await node.stop();
    throw new Error(`redis-server did not start:\n${node.output()}`, { cause: error });
  }
  return { port, node };
}

/**
 * A real Aedes cluster: one Redis and `nodes` Aedes processes (test/helpers/aedes-node.mjs), each on its
 * own port. Resolves once every node has passed an MQTT round trip.
 */
export function startAedesCluster(options: AedesClusterOptions = {}): Promise<AedesCluster> {
  return retryingPortClash(() => startOnce(options));
}

async function startOnce(options: AedesClusterOptions): Promise<AedesCluster> {
  const count = options.nodes ?? 3;
  const heartbeatInterval = options.heartbeatInterval ?? 1000;
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-aedes-"));
  const redis = await startRedis(dir);
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  const urls = ports.map((port) => `mqtt://127.0.0.1:${port}`);
  // What each node said about its clients, from its stdout; a node that dies takes its set with it.
  const clients: Set<string>[] = ports.map(() => new Set());
  const nodes = nodeSet({
    engine: "aedes",
    count,
    spawn(i) {
      clients[i] = new Set();
      const held = clients[i];
      return spawnNode(process.execPath, [NODE_SCRIPT], {
        env: {
          PATH: process.env.PATH,
          AEDES_PORT: String(nodeAt(ports, i)),
          REDIS_PORT: String(redis.port),
          AEDES_NAME: `n${i}`,
          HEARTBEAT_MS: String(heartbeatInterval),
        },
        onLine(line) {
          if (!line.startsWith("{")) return;
          const event = JSON.parse(line) as { event: string; client?: string };
          if (event.event === "connect" && event.client) held.add(event.client);
          if (event.event === "disconnect" && event.client) held.delete(event.client);
        },
      });
    },
    port: (i) => nodeAt(ports, i),
    ready: (i) => waitMqttReady(nodeAt(urls, i), 30_000),
    stopped(i) {
      clients[i] = new Set();
    },
  });
  const cluster: AedesCluster = {
    engine: "aedes",
    urls,
    mqttUrl: urls.join(","),
    url: (i) => nodeAt(urls, i),
    redisPort: redis.port,
    heartbeatInterval,
    pid: nodes.pid,
    async clientsOf(i) {
      return [...nodeAt(clients, i)];
    },
    async nodeOfClient(clientId) {
      const i = clients.findIndex((held) => held.has(clientId));
      return i < 0 ? undefined : i;
    },
    kill: nodes.kill,
    start: nodes.start,
    stopAll: nodes.stopAll,
    restartAll: nodes.restartAll,
    async close() {
      await nodes.stopAll("SIGKILL");
      await redis.node.stop();
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

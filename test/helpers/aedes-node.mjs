// One node of an Aedes cluster: Aedes 1.2 with its sessions, retained messages and Wills in Redis
// (aedes-persistence-redis) and its messages shared through Redis pub/sub (mqemitter-redis), the way
// Aedes documents clustering. A process of its own, so `kill -9` is a node that really dies.
//
//   AEDES_PORT=1883 REDIS_PORT=6379 [AEDES_NAME=n0] [HEARTBEAT_MS=60000] node aedes-node.mjs
//
// HEARTBEAT_MS is Aedes' heartbeatInterval: the survivors publish a dead node's Wills 3 to 7 of these
// after it died. It prints one JSON line per event on stdout: ready, connect, disconnect.
import net from "node:net";
import { Aedes } from "aedes";
import redisPersistence from "aedes-persistence-redis";
import mqemitterRedis from "mqemitter-redis";

const port = Number(process.env.AEDES_PORT);
const redis = { host: "127.0.0.1", port: Number(process.env.REDIS_PORT) };
const name = process.env.AEDES_NAME ?? "aedes";
const say = (event) => process.stdout.write(`${JSON.stringify({ node: name, ...event })}\n`);

const broker = await Aedes.createBroker({
  // A new id per process, as Aedes' default: a restarted node is a new broker to its peers.
  id: `${name}-${process.pid}`,
  heartbeatInterval: Number(process.env.HEARTBEAT_MS ?? 60_000),
  persistence: redisPersistence(redis),
  // No ready check on the bus's connections: ioredis 5.8.2 and later can send its INFO after the
  // subscriber connection has entered subscriber mode, which Redis refuses; the "fatal" error then
  // kills the node as it starts (redis/ioredis#2037, seen once in CI: "ERR Can't execute 'info'").
  // The tests' Redis keeps nothing on disk, so it has nothing to load before it is ready.
  mq: mqemitterRedis({ ...redis, enableReadyCheck: false }),
});
broker.on("client", (client) => say({ event: "connect", client: client.id }));
broker.on("clientDisconnect", (client) => say({ event: "disconnect", client: client.id }));
broker.on("error", (error) => say({ event: "error", message: String(error) }));

// Nagle off, as NATS (Go's sockets) and the tests' Mosquitto (set_tcp_nodelay) have it.
const server = net.createServer({ noDelay: true }, broker.handle);
server.listen(port, "127.0.0.1", () => say({ event: "ready", id: broker.id, port }));

const shutdown = () => {
  server.close();
  broker.close(() => process.exit(0));
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import mqtt from "mqtt";

/** What both engines' test clusters offer; `startNatsCluster` and `startAedesCluster` build one. */
export interface TestCluster {
  readonly engine: "nats" | "aedes";
  /** `mqtt://127.0.0.1:<port>`, one per node, by node index. */
  readonly urls: readonly string[];
  /** The nodes comma-joined, as MQTT_URL takes a cluster. */
  readonly mqttUrl: string;
  /** urls[i], or a RangeError for a node the cluster does not have. */
  url(i: number): string;
  /** The PID of node i's running process, or undefined while it is down. */
  pid(i: number): number | undefined;
  /** SIGKILL node i (a machine that dies: no goodbye to clients or peers) and wait for its exit. */
  kill(i: number): Promise<void>;
  /** Starts node i again with the same config and store, and waits until it serves MQTT. */
  start(i: number): Promise<void>;
  /** Stops every node (SIGTERM by default, as a service manager would); shared storage is kept. */
  stopAll(signal?: NodeJS.Signals): Promise<void>;
  /** stopAll() then every node started at once, resolved when each serves MQTT again. */
  restartAll(): Promise<void>;
  /** The client ids connected to node i right now. */
  clientsOf(i: number): Promise<string[]>;
  /** The node a client id is connected to, or undefined when it is on none. */
  nodeOfClient(clientId: string): Promise<number | undefined>;
  /** Stops everything it started, by PID, and removes its temp dirs (what teardown calls). */
  close(): Promise<void>;
}

/**
 * Kills node i, runs `check`, then starts the node again even when the check failed, so the tests
 * after it find the cluster whole.
 */
export async function whileKilled<T>(cluster: TestCluster, i: number, check: () => Promise<T>): Promise<T> {
  await cluster.kill(i);
  try {
    return await check();
  } finally {
    await cluster.start(i);
  }
}

/**
 * `start()` again, on new ports, when a node could not bind one: freePort() only finds a port free a
 * moment before the node takes it, and another program on the machine may take it first.
 */
export async function retryingPortClash<T>(start: () => Promise<T>, tries = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (attempt >= tries || !/address already in use/i.test(String(error))) throw error;
    }
  }
}

/** list[i] for a node index, or a RangeError naming it. */
export function nodeAt<T>(list: readonly T[], i: number): T {
  const value = list[i];
  if (value === undefined) throw new RangeError(`no node ${i} in a cluster of ${list.length}`);
  return value;
}

function installed(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: "ignore" });
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ENOENT";
  }
}

// Debian puts nats-server in /usr/sbin, which is not on every user's PATH.
export const NATS_SERVER = installed("nats-server", ["--version"]) ? "nats-server" : "/usr/sbin/nats-server";

export function hasNatsServer(): boolean {
  return installed(NATS_SERVER, ["--version"]);
}

export function hasRedisServer(): boolean {
  return installed("redis-server", ["--version"]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One MQTT round trip that needs the whole engine: a persistent session (clean: false), a QoS 1
 * subscription granted (not 0x80), and a retained message stored and replayed to that subscription.
 * A NATS node accepts TCP long before JetStream has its streams, so an open port proves nothing. Each
 * step has its own deadline: MQTT.js's connectAsync() never settles when the server holds a CONNECT past
 * connectTimeout, and a stalled NATS node does exactly that.
 */
async function probe(url: string, auth: ProbeAuth): Promise<void> {
  const tag = randomBytes(4).toString("hex");
  const topic = `probe/${tag}`;
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    clean: false,
    clientId: `probe-${tag}`,
    reconnectPeriod: 0,
    connectTimeout: 15_000,
    ...auth,
  });
  client.on("error", () => {});
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        client.once("connect", () => resolve());
        client.once("error", reject);
        client.once("close", () => reject(new Error("connection closed")));
      }),
      15_000,
      "CONNECT",
    );
    // Aedes over Redis acks a PUBLISH before its peers (and itself) have it from the bus, so the live
    // copy may arrive after the SUBSCRIBE too; only the replay has the retain flag.
    const replayed = new Promise<void>((resolve) =>
      client.on("message", (_t, _p, packet) => packet.retain && resolve()),
    );
    await within(client.publishAsync(topic, "ready", { qos: 1, retain: true }), 10_000, "retained PUBLISH");
    const granted = await within(client.subscribeAsync(topic, { qos: 1 }), 10_000, "SUBSCRIBE");
    if (granted[0]?.qos !== 1) throw new Error(`QoS 1 subscription refused: ${JSON.stringify(granted)}`);
    await within(replayed, 10_000, "retained replay");
    await within(client.publishAsync(topic, "", { qos: 1, retain: true }), 10_000, "clearing PUBLISH");
  } finally {
    client.end(true);
  }
}

/** A user allowed to publish and subscribe to `probe/#`, for a cluster that requires one. */
export interface ProbeAuth {
  readonly username?: string;
  readonly password?: string;
}

/** Probes `url` until it passes or `timeoutMs` is over; the last failure is in the error. */
export async function waitMqttReady(url: string, timeoutMs = 90_000, auth: ProbeAuth = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await probe(url, auth);
      return;
    } catch (error) {
      if (process.env.CLUSTER_DEBUG) console.error(`probe ${url}: ${String(error)}`);
      if (Date.now() > deadline) {
        throw new Error(`${url} did not serve MQTT within ${timeoutMs} ms: ${String(error)}`, {
          cause: error,
        });
      }
      await sleep(250);
    }
  }
}

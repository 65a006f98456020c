import { type ChildProcess, spawn } from "node:child_process";
import { waitForPort } from "./broker.js";

/** One server process of a test cluster (a NATS node, an Aedes node, Redis), its output kept for errors. */
export interface NodeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The last 64 KiB it printed, stdout and stderr together. */
  output(): string;
  /** Resolves once it has exited. */
  readonly exited: Promise<void>;
  /** Sends `signal` (SIGKILL by default: a node that dies, not one that shuts down) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const KEEP = 64 * 1024;

export function spawnNode(
  file: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; onLine?: (line: string) => void } = {},
): NodeProcess {
  const child = spawn(file, args, { env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid === undefined) throw new Error(`could not start ${file}`);
  let output = "";
  let partial = "";
  const keep = (chunk: string) => {
    output = (output + chunk).slice(-KEEP);
  };
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    keep(chunk);
    if (!options.onLine) return;
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) options.onLine(line);
  });
  child.stderr?.setEncoding("utf8").on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    pid: child.pid,
    output: () => output,
    exited,
    async stop(signal: NodeJS.Signals = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** What a cluster helper tells nodeSet() about its engine. */
export interface NodeSetOptions {
  /** "nats", "aedes": for the error when a node does not start. */
  readonly engine: string;
  readonly count: number;
  /** Spawns node i (spawnNode with its config). */
  spawn(i: number): NodeProcess;
  /** The port node i listens on once it runs. */
  port(i: number): number;
  /** Resolves once node i serves MQTT (waitMqttReady). */
  ready(i: number): Promise<void>;
  /** Called once node i is down, for what the helper kept about it. */
  stopped?(i: number): void;
}

/** The nodes of a test cluster, by index: started, killed and restarted the same way for every engine. */
export interface NodeSet {
  pid(i: number): number | undefined;
  /** SIGKILL node i and wait for its exit. */
  kill(i: number): Promise<void>;
  /** Starts node i and waits until every running node serves MQTT. */
  start(i: number): Promise<void>;
  /** Every node started at once, resolved when each serves MQTT (a failed start stops them all). */
  startAll(): Promise<void>;
  stopAll(signal?: NodeJS.Signals): Promise<void>;
  /** stopAll() (SIGTERM), then startAll(). */
  restartAll(): Promise<void>;
}

export function nodeSet(options: NodeSetOptions): NodeSet {
  const nodes: (NodeProcess | undefined)[] = new Array(options.count).fill(undefined);
  const indexes = nodes.map((_, i) => i);
  const launch = async (i: number): Promise<void> => {
    if (nodes[i]) throw new Error(`${options.engine} node ${i} is already running`);
    const node = options.spawn(i);
    nodes[i] = node;
    try {
      await waitForPort(options.port(i), 15_000);
    } catch (error) {
      throw new Error(`${options.engine} node ${i} did not start:\n${node.output()}`, { cause: error });
    }
  };
  // A node that listened and then died (seen once: ECONNREFUSED for 30 s) says why in its own output.
  const ready = async (i: number): Promise<void> => {
    try {
      await options.ready(i);
    } catch (error) {
      throw new Error(`${String(error)}\n${options.engine} node ${i} said:\n${nodes[i]?.output() ?? ""}`, {
        cause: error,
      });
    }
  };
  const stop = async (i: number, signal: NodeJS.Signals): Promise<void> => {
    const node = nodes[i];
    nodes[i] = undefined;
    await node?.stop(signal);
    options.stopped?.(i);
  };
  const set: NodeSet = {
    pid: (i) => nodes[i]?.pid,
    kill: (i) => stop(i, "SIGKILL"),
    async start(i) {
      await launch(i);
      // Every node, not only the new one: while a peer rejoins, the others may still refuse a QoS 1
      // SUBSCRIBE (NATS answers SUBACK 0x80), and the next test must find the whole cluster serving.
      await Promise.all(indexes.filter((n) => nodes[n]).map(ready));
    },
    async startAll() {
      try {
        await Promise.all(indexes.map(launch));
        await Promise.all(indexes.map(ready));
      } catch (error) {
        await set.stopAll("SIGKILL");
        throw error;
      }
    },
    async stopAll(signal = "SIGTERM") {
      await Promise.all(indexes.map((i) => stop(i, signal)));
    },
    async restartAll() {
      await set.stopAll();
      await set.startAll();
    },
  };
  return set;
}

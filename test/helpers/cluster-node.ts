import { type ChildProcess, spawn } from "node:child_process";

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

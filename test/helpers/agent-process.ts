import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { LogLine } from "./log.js";

const MAIN = fileURLToPath(new URL("../../dist/main.js", import.meta.url));

export interface TraceWrite {
  readonly t: number;
  readonly pin: number;
  readonly duty: number;
}

/** `node dist/main.js` as a real process on the mock driver, its JSON log lines collected. */
export interface AgentProcess {
  readonly child: ChildProcess;
  readonly id: string;
  readonly dir: string;
  readonly stateFile: string;
  readonly traceFile: string;
  readonly logs: LogLine[];
  /** Resolves when the process has exited, with its exit code or signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every pin write so far, from MOCK_GPIO_TRACE. */
  trace(): TraceWrite[];
  /** The duty each pin shows now, by pin number. */
  duties(): Map<number, number>;
  /** SIGTERM and wait for the exit (a stopped process is left alone). */
  stop(): Promise<void>;
}

let counter = 0;

/**
 * The temp dirs spawnAgent made, removed when the test process exits: not at stop(), since a test may
 * start a second agent on the first one's dir to see what it restores.
 */
const madeDirs = new Set<string>();
process.once("exit", () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

export function builtAgentExists(): boolean {
  return existsSync(MAIN);
}

/** A white command (saturation 0): with GAMMA=1 every pin then shows duty `brightness`. */
export function white(brightness: number, client: string): string {
  return JSON.stringify({ on: true, color: { h: 0, s: 0 }, brightness, client });
}

/** The pins all show `duty` (within float noise). */
export function showing(duties: Map<number, number>, duty: number): boolean {
  return duties.size === 3 && [...duties.values()].every((d) => Math.abs(d - duty) < 1e-9);
}

/**
 * Spawns the built agent. `dir` (default: a fresh temp dir) holds the state file and the pin trace, so a
 * second process started on the same dir and id restores what the first one saved.
 */
export function spawnAgent(
  url: string,
  env: Record<string, string> = {},
  options: { id?: string; dir?: string } = {},
): AgentProcess {
  if (!builtAgentExists()) throw new Error(`${MAIN} is missing: run npm run build first`);
  const id = options.id ?? `f${process.pid}x${++counter}`;
  let dir = options.dir;
  if (dir === undefined) {
    dir = mkdtempSync(path.join(tmpdir(), "lamp-fault-"));
    madeDirs.add(dir);
  }
  const stateFile = env.STATE_FILE ?? path.join(dir, "state.json");
  const traceFile = path.join(dir, "trace.jsonl");
  const child = spawn(process.execPath, [MAIN], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      MQTT_URL: url,
      LAMP_ID: id,
      GPIO_DRIVER: "mock",
      STATE_FILE: stateFile,
      MOCK_GPIO_TRACE: traceFile,
      LOG_FORMAT: "json",
      LOG_LEVEL: "debug",
      HA_DISCOVERY: "false",
      // Linear, so a white state of brightness b shows as duty b on every pin: easy to check.
      GAMMA: "1",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogLine[] = [];
  let partial = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (!line) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 60, msg: `unparsable log line: ${line}` });
      }
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => logs.push({ level: 50, msg: `stderr: ${chunk}` }));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const trace = (): TraceWrite[] => {
    if (!existsSync(traceFile)) return [];
    return readFileSync(traceFile, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as TraceWrite);
  };
  return {
    child,
    id,
    dir,
    stateFile,
    traceFile,
    logs,
    exited,
    trace,
    duties() {
      const duties = new Map<number, number>();
      for (const write of trace()) duties.set(write.pin, write.duty);
      return duties;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

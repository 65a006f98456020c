import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const MAIN = path.join(ROOT, "dist", "main.js");

export interface AgentProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** SIGTERM and wait for the exit (a stopped process is left alone). */
  stop(): Promise<void>;
}

/** The built agent as a real process, with a clean environment plus `env`. */
export function spawnAgent(env: Record<string, string>, args: string[] = []): AgentProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: env.CWD ?? ROOT,
    env: { PATH: process.env.PATH ?? "", LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  return {
    child,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

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

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether a process still runs (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A finished command: its exit code (null when a signal ended it) and everything it printed. */
export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ExecOptions {
  readonly timeoutMs?: number;
  readonly input?: string | Buffer;
}

export interface CollectOptions extends ExecOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * On timeout: "reject" kills it (SIGKILL) and fails with the output so far, for a step that must
   * finish; "kill" sends `killSignal` and resolves with however it ended, for a caller that reads the
   * code itself.
   */
  readonly onTimeout?: "reject" | "kill";
  readonly killSignal?: NodeJS.Signals;
}

/** The stdout of a command that had to succeed; otherwise an error carrying its code and output. */
export function succeeded(command: string, result: ExecResult): string {
  if (result.code !== 0) {
    throw new Error(
      `exit ${result.code}: ${command}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
    );
  }
  return result.stdout;
}

/** Runs `file` with `args`, feeds it `input`, and collects stdout and stderr until it exits. */
export function runCollected(
  file: string,
  args: readonly string[],
  options: CollectOptions = {},
): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      if (options.onTimeout === "kill") {
        child.kill(options.killSignal ?? "SIGKILL");
        return;
      }
      child.kill("SIGKILL");
      reject(
        new Error(`timed out after ${timeoutMs} ms: ${[file, ...args].join(" ")}\n${stdout}\n${stderr}`),
      );
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that reads no input may exit before taking it.
    child.stdin.on("error", () => {});
    child.stdin.end(options.input ?? "");
  });
}

/**
 * Runs a script that builds something once into a cache (a root, a board) and prints its directory last;
 * its progress goes to our stderr. Rejects when it fails, or stops it after `timeoutMs`.
 */
export function runBuildScript(
  script: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 20 * 60_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(script, args, {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env },
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim().split("\n").at(-1) ?? "");
      else reject(new Error(`${path.basename(script)} exited ${code}`));
    });
  });
}

import type { ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import type { Logger } from "../log.js";

// Loaded on first use: only under a service manager (NOTIFY_SOCKET) is there anything to tell, and
// child_process brings about ten of Node's modules to a start that has no use for them.
const load = createRequire(import.meta.url);
const childProcess = (): typeof import("node:child_process") => load("node:child_process");

/**
 * The service manager's side of the sd_notify protocol (`Type=notify`, `WatchdogSec=`).
 *
 * Every method is a no-op when the process is not run by systemd with a notify socket, so the agent
 * calls them unconditionally.
 */
export interface Notifier {
  /** True when NOTIFY_SOCKET is set, i.e. when a service manager is listening. */
  readonly enabled: boolean;
  /** `READY=1`: start-up is complete. Send it once the pins are initialised, not when the broker is. */
  ready(status?: string): void;
  /** `STATUS=...`: one line shown by `systemctl status`. */
  status(text: string): void;
  /** `STOPPING=1`: shutdown has begun. */
  stopping(): void;
  /** Sends `WATCHDOG=1` now and then at half of `WATCHDOG_USEC`, if systemd asked for a watchdog. */
  startWatchdog(): void;
  /** Stops the watchdog and waits (bounded) for messages still being delivered. */
  close(): Promise<void>;
}

export interface NotifierOptions {
  /** The sender program; `systemd-notify` from the service's PATH unless a test says otherwise. */
  readonly command?: string;
  /** How long close() waits for messages in flight before giving up on them. */
  readonly closeTimeoutMs?: number;
}

/**
 * Node cannot send datagrams on an AF_UNIX socket, and the notify socket accepts nothing else, so
 * each message is handed to `systemd-notify`. Since systemd 246 that tool waits (with a barrier)
 * until the manager has processed the message, so the manager can still map its PID to our unit and
 * the old race of a helper exiting too early is gone; the unit needs `NotifyAccess=all` because the
 * sender is a child, not the main process. https://github.com/systemd/systemd/issues/2739
 *
 * Watchdog pings are started from a timer on the event loop on purpose: a process that is frozen
 * (SIGSTOP, an endless loop, a stuck synchronous call) stops pinging and systemd restarts it.
 */
export function createNotifier(
  env: NodeJS.ProcessEnv,
  logger: Logger,
  options: NotifierOptions = {},
): Notifier {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === "") return disabledNotifier;
  return new SystemdNotifier(socket, env, logger.child({ component: "systemd" }), options);
}

const disabledNotifier: Notifier = {
  enabled: false,
  ready() {},
  status() {},
  stopping() {},
  startWatchdog() {},
  async close() {},
};

/** The ping interval systemd asks for (half of WATCHDOG_USEC, in ms), or undefined for no watchdog. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  // As sd_watchdog_enabled(3): a WATCHDOG_PID naming another process means the watchdog is not ours.
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== "" && Number(env.WATCHDOG_PID) !== pid) {
    return undefined;
  }
  return Math.max(1, Math.floor(usec / 2000));
}

class SystemdNotifier implements Notifier {
  readonly enabled = true;
  private readonly command: string;
  private readonly closeTimeoutMs: number;
  private readonly childEnv: NodeJS.ProcessEnv;
  private readonly inFlight = new Set<ChildProcess>();
  private watchdog: NodeJS.Timeout | undefined;
  private pingInFlight = false;
  private failures = 0;
  private closed = false;

  constructor(
    socket: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly logger: Logger,
    options: NotifierOptions,
  ) {
    this.command = options.command ?? "systemd-notify";
    this.closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    // Only what the sender needs: it must not pick up settings meant for the agent.
    this.childEnv = { NOTIFY_SOCKET: socket, PATH: env.PATH ?? "/usr/local/bin:/usr/bin:/bin" };
  }

  ready(status?: string): void {
    this.send(status === undefined ? ["READY=1"] : ["READY=1", `STATUS=${oneLine(status)}`]);
  }

  status(text: string): void {
    this.send([`STATUS=${oneLine(text)}`]);
  }

  stopping(): void {
    this.send(["STOPPING=1"]);
  }

  startWatchdog(): void {
    if (this.closed || this.watchdog !== undefined) return;
    const interval = watchdogIntervalMs(this.env);
    if (interval === undefined) return;
    this.logger.debug({ intervalMs: interval }, "watchdog pings started");
    this.ping();
    this.watchdog = setInterval(() => this.ping(), interval);
    // The watchdog must never be the thing that keeps a stopping agent alive.
    this.watchdog.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
    if (this.inFlight.size === 0) return;
    const pending = [...this.inFlight].map(
      (child) => new Promise<void>((resolve) => child.once("close", () => resolve())),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.closeTimeoutMs);
    });
    const outcome = await Promise.race([Promise.all(pending), timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.logger.warn(
        { pending: this.inFlight.size },
        "systemd did not take the last notifications in time",
      );
      for (const child of this.inFlight) child.kill("SIGKILL");
    }
  }

  private ping(): void {
    // A sender still waiting on the manager means the manager is slow, not that we are frozen;
    // piling up more senders would not help it.
    if (this.pingInFlight) {
      this.logger.debug("previous watchdog ping still in flight, skipping one");
      return;
    }
    this.pingInFlight = true;
    this.send(["WATCHDOG=1"], () => {
      this.pingInFlight = false;
    });
  }

  private send(fields: readonly string[], done?: () => void): void {
    if (this.closed) {
      done?.();
      return;
    }
    let child: ChildProcess;
    try {
      child = childProcess().spawn(this.command, [...fields], {
        env: this.childEnv,
        stdio: ["ignore", "ignore", "pipe"],
      });
    } catch (error) {
      this.failed(fields, String(error));
      done?.();
      return;
    }
    this.inFlight.add(child);
    let stderr = "";
    let spawnFailed = false;
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      if (stderr.length < 1000) stderr += chunk;
    });
    child.once("error", (error: NodeJS.ErrnoException) => {
      spawnFailed = true;
      const reason =
        error.code === "ENOENT" ? `${this.command} not found (it comes with systemd)` : String(error.message);
      this.failed(fields, reason);
    });
    child.once("close", (code, signal) => {
      this.inFlight.delete(child);
      if (spawnFailed) {
        // Already reported by the error handler.
      } else if (code !== 0 && code !== null)
        this.failed(fields, stderr.trim() || `${this.command} exited ${code}`);
      else if (signal !== null && !this.closed) this.failed(fields, `${this.command} killed by ${signal}`);
      done?.();
    });
  }

  private failed(fields: readonly string[], reason: string): void {
    this.failures += 1;
    // Loud the first time (a start that systemd never hears about ends in a timeout, so say why),
    // quiet afterwards: the watchdog would otherwise repeat it every few seconds.
    const level = this.failures === 1 ? "warn" : "debug";
    this.logger[level]({ message: fields.join(" "), reason }, "could not notify systemd");
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ").slice(0, 200);
}

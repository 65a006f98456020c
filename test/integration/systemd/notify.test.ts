import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createNotifier } from "../../../src/systemd/notify.js";
import { captureLogger } from "../../helpers/log.js";

// The real sender (systemd-notify) talking to a real AF_UNIX datagram socket that plays the manager.
const receiverScript = fileURLToPath(new URL("../../helpers/notify-socket.py", import.meta.url));

function available(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const canRun = available("systemd-notify", ["--version"]) && available("python3", ["--version"]);

interface Datagram {
  readonly t: number;
  readonly fields: string[];
}

interface Receiver {
  readonly path: string;
  readonly messages: Datagram[];
  waitFor(predicate: (messages: Datagram[]) => boolean, timeoutMs?: number): Promise<void>;
  stop(): void;
}

async function startReceiver(dir: string): Promise<Receiver> {
  const socketPath = path.join(dir, "notify.sock");
  const child: ChildProcess = spawn("python3", [receiverScript, socketPath], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const messages: Datagram[] = [];
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    lines.on("line", (line) => {
      const parsed = JSON.parse(line) as Partial<Datagram> & { listening?: string };
      if (parsed.listening !== undefined) resolve();
      // BARRIER=1 is systemd-notify's own handshake, not something the agent said.
      else if (parsed.fields && !parsed.fields.includes("BARRIER=1")) messages.push(parsed as Datagram);
    });
  });
  return {
    path: socketPath,
    messages,
    async waitFor(predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(messages)) {
        if (Date.now() > deadline) throw new Error(`not received in time: ${JSON.stringify(messages)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop() {
      child.kill("SIGKILL");
    },
  };
}

const pings = (messages: Datagram[]) => messages.filter((m) => m.fields.includes("WATCHDOG=1"));

describe.skipIf(!canRun)("notifier through systemd-notify to a real notify socket", () => {
  let dir: string;
  let receiver: Receiver;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "lamp-notify-"));
    receiver = await startReceiver(dir);
  });

  afterEach(() => {
    receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("delivers READY with a status, STATUS and STOPPING, in order", async () => {
    const { logger, lines } = captureLogger();
    const notifier = createNotifier({ NOTIFY_SOCKET: receiver.path, PATH: process.env.PATH }, logger);
    expect(notifier.enabled).toBe(true);
    notifier.ready("pins ready, broker pending");
    await receiver.waitFor((m) => m.length >= 1);
    notifier.status("connected");
    await receiver.waitFor((m) => m.length >= 2);
    notifier.stopping();
    await notifier.close();
    await receiver.waitFor((m) => m.length >= 3);
    expect(receiver.messages.map((m) => m.fields)).toEqual([
      ["READY=1", "STATUS=pins ready, broker pending"],
      ["STATUS=connected"],
      ["STOPPING=1"],
    ]);
    expect(lines.filter((line) => line.msg.includes("could not notify"))).toEqual([]);
  });

  it("pings at half of WATCHDOG_USEC, and stops when the event loop is blocked or closed", async () => {
    const { logger } = captureLogger();
    // 400 ms watchdog: a ping every 200 ms.
    const env = { NOTIFY_SOCKET: receiver.path, PATH: process.env.PATH, WATCHDOG_USEC: "400000" };
    const notifier = createNotifier(env, logger);
    notifier.startWatchdog();
    await receiver.waitFor((m) => pings(m).length >= 4, 5000);
    const first = pings(receiver.messages);
    const gaps = first.slice(1).map((m, i) => m.t - (first[i] as Datagram).t);
    // Each gap near 200 ms; spawning on a busy two-core machine adds some.
    for (const gap of gaps) expect(gap).toBeGreaterThan(120);
    expect(Math.min(...gaps)).toBeLessThan(400);

    // A frozen agent must go quiet so systemd restarts it: block the loop for 1 s.
    const before = pings(receiver.messages).length;
    const blockedFrom = Date.now();
    while (Date.now() - blockedFrom < 1000) {
      // busy: no timer, no child process can run on this thread
    }
    const blockedUntil = Date.now();
    await receiver.waitFor((m) => pings(m).length >= before + 2, 5000);
    const during = pings(receiver.messages).filter((m) => m.t > blockedFrom + 150 && m.t < blockedUntil);
    expect(during).toEqual([]);

    await notifier.close();
    const afterClose = pings(receiver.messages).length;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(pings(receiver.messages).length).toBe(afterClose);
  });

  it("does not ping when the watchdog belongs to another process", async () => {
    const { logger } = captureLogger();
    const env = {
      NOTIFY_SOCKET: receiver.path,
      PATH: process.env.PATH,
      WATCHDOG_USEC: "200000",
      WATCHDOG_PID: String(process.pid + 1),
    };
    const notifier = createNotifier(env, logger);
    notifier.startWatchdog();
    notifier.status("marker");
    await receiver.waitFor((m) => m.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await notifier.close();
    expect(receiver.messages.map((m) => m.fields)).toEqual([["STATUS=marker"]]);
  });

  it("reports a manager that never answers, and close() still returns", async () => {
    // A socket nobody reads: systemd-notify waits on its barrier; close() must not wait with it forever.
    const { logger, lines } = captureLogger();
    receiver.stop();
    const silent = path.join(dir, "silent.sock");
    const holder = spawn(
      "python3",
      [
        "-c",
        "import socket,sys,time;s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM);s.bind(sys.argv[1]);print('up',flush=True);time.sleep(60)",
        silent,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      await new Promise((resolve) => holder.stdout?.once("data", resolve));
      const notifier = createNotifier({ NOTIFY_SOCKET: silent, PATH: process.env.PATH }, logger, {
        closeTimeoutMs: 300,
      });
      notifier.stopping();
      const started = Date.now();
      await notifier.close();
      expect(Date.now() - started).toBeLessThan(2000);
      expect(lines.map((line) => line.msg)).toContain("systemd did not take the last notifications in time");
    } finally {
      holder.kill("SIGKILL");
    }
  });
});

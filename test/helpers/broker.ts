import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/** A real broker for one test file: Mosquitto on a free port, Aedes in-process only where it is missing. */
export interface TestBroker {
  readonly kind: "mosquitto" | "aedes";
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** Stops the broker (SIGTERM) and waits for it to exit; restart() can start it again. */
  stop(): Promise<void>;
  /** Stops it for good and removes its temp dir (what teardown() calls). */
  close(): Promise<void>;
  /** Starts it again on the same port with the same config (for restart tests). */
  restart(): Promise<void>;
}

export interface BrokerOptions {
  /** Extra mosquitto.conf lines, written after the listener line; `{dir}` is the broker's own temp dir. */
  readonly config?: readonly string[];
  /** Replace the default listener block entirely (for TLS listeners and such); `{port}` is substituted. */
  readonly listener?: readonly string[];
  readonly port?: number;
  /** Keep the broker's stderr for inspection instead of discarding it. */
  readonly verbose?: boolean;
  /** Aedes in-process even where Mosquitto is installed: a broker that speaks MQTT 3.1.1 only. */
  readonly aedes?: boolean;
}

export function hasMosquitto(): boolean {
  try {
    execFileSync("mosquitto", ["-h"], { stdio: "ignore" });
    return true;
  } catch (error) {
    // `mosquitto -h` exits 3 after printing help; only ENOENT means it is missing.
    return (error as NodeJS.ErrnoException).code !== "ENOENT";
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => child.once("exit", () => resolve()));
}

export async function startBroker(options: BrokerOptions = {}): Promise<TestBroker> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-broker-"));
  if (options.aedes || !hasMosquitto()) return startAedes(port, dir);

  const listener = (options.listener ?? [`listener ${port} 127.0.0.1`, "allow_anonymous true"]).map((line) =>
    line.replaceAll("{port}", String(port)),
  );
  const conf = path.join(dir, "mosquitto.conf");
  // `user root` only matters when tests run as root: mosquitto would otherwise drop to the mosquitto
  // user and could not read keys or write persistence in this root-owned temp dir.
  writeFileSync(
    conf,
    [
      ...listener,
      "set_tcp_nodelay true",
      "persistence false",
      ...(process.getuid?.() === 0 ? ["user root"] : []),
      ...(options.config ?? []).map((line) => line.replaceAll("{dir}", dir)),
      "",
    ].join("\n"),
  );
  let child: ChildProcess;
  let stderr = "";
  const launch = async (): Promise<void> => {
    child = spawn("mosquitto", ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (options.verbose) process.stderr.write(chunk);
    });
    try {
      await waitForPort(port);
    } catch (error) {
      throw new Error(`mosquitto did not start: ${stderr}`, { cause: error });
    }
  };
  await launch();
  return closable({
    kind: "mosquitto",
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    async stop() {
      child.kill("SIGTERM");
      await waitForExit(child);
    },
    async restart() {
      await launch();
    },
  });
}

async function startAedes(port: number, dir: string): Promise<TestBroker> {
  const { Aedes } = await import("aedes");
  let aedes = await Aedes.createBroker();
  // Nagle off, as the Mosquitto above (set_tcp_nodelay) and the demo's broker.
  const serve = () => net.createServer({ noDelay: true }, aedes.handle);
  let server = serve();
  const listen = () => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  await listen();
  return closable({
    kind: "aedes",
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    async stop() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    async restart() {
      aedes = await Aedes.createBroker();
      server = serve();
      await listen();
    },
  });
}

/** A restartable broker, closed for good by stopping it and removing its dir. */
function closable(broker: Omit<TestBroker, "close">): TestBroker {
  return {
    ...broker,
    async close() {
      await broker.stop();
      rmSync(broker.dir, { recursive: true, force: true });
    },
  };
}

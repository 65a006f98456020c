// Helpers for bench/run.mjs: a Mosquitto on loopback, process accounting from /proc, a recording MQTT
// client and a follower for MOCK_GPIO_TRACE files. Plain .mjs so `npm run bench` needs only the build.
import { execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  watch,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";

/** The repository: where dist/ and test/helpers/ are. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const now = () => performance.now();

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on port ${port}`);
    await sleep(50);
  }
}

export function mosquittoVersion() {
  try {
    return execFileSync("mosquitto", ["-h"], { encoding: "utf8" }).split("\n")[0];
  } catch (error) {
    // `mosquitto -h` exits 3 after printing its help.
    if (error.code === "ENOENT") return undefined;
    return String(error.stdout ?? "").split("\n")[0];
  }
}

/**
 * Mosquitto on a free loopback port. `set_tcp_nodelay true`, or every figure measures Nagle and delayed
 * ACKs (40 ms stalls) rather than the clients (`nodelay: false` is Mosquitto's default, for
 * bench/nagle.mjs). `max_queued_messages` is raised from Mosquitto's 1000 so the 1000-command backlog is
 * not cut short by the broker (which drops the newest when the queue is full).
 */
export async function startBroker(dir, { nodelay = true } = {}) {
  const port = await freePort();
  const conf = path.join(dir, `mosquitto-${port}.conf`);
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      ...(nodelay ? ["set_tcp_nodelay true"] : []),
      "persistence false",
      "max_queued_messages 10000",
      ...(process.getuid?.() === 0 ? ["user root"] : []),
      "",
    ].join("\n"),
  );
  const child = spawn("mosquitto", ["-c", conf], {
    stdio: ["ignore", "ignore", openSync(path.join(dir, `mosquitto-${port}.log`), "a")],
  });
  await waitForPort(port);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid,
    stop: () => stopChild(child),
  };
}

/**
 * The built agent (dist/main.js) as a lamp called `id` on `url`: the mock driver, its state file and log
 * in `dir`, an environment of PATH, HOME and `env` only. For the small benches; run.mjs has its own.
 */
export function spawnBuiltAgent(dir, url, id, env = {}) {
  const out = openSync(path.join(dir, `${id}.log`), "a");
  return spawn(process.execPath, [path.join(ROOT, "dist/main.js")], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      MQTT_URL: url,
      LAMP_ID: id,
      GPIO_DRIVER: "mock",
      STATE_FILE: path.join(dir, `${id}.json`),
      ...env,
    },
    stdio: ["ignore", out, out],
  });
}

/** Signals a child process and resolves once it has exited (at once if it already has). */
export async function stopChild(child, signal = "SIGTERM") {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  await exited;
}

export function tempDir() {
  return mkdtempSync(path.join(tmpdir(), "lamp-bench-"));
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** The fields of /proc/<pid>/stat after the command name (which may contain spaces). */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** CPU time (user + system) of a process so far, in ms, from /proc/<pid>/stat. */
export function cpuMs(pid) {
  const fields = statFields(pid);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** CPU time of a process's children that have exited and been waited for (cutime + cstime), in ms. */
export function childrenCpuMs(pid) {
  const fields = statFields(pid);
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLK_TCK;
}

/**
 * CPU time of every thread of a process, in ms: V8's compiler and GC threads and libuv's pool do part of
 * a Node program's work. `statMs` is utime + stime from /proc/<pid>/task/<tid>/stat (clock ticks, 10 ms
 * steps); `ms` is the same time from .../schedstat in nanoseconds where the kernel has it, which is what
 * a block of a few hundred commands needs (a tick is 10% of one). `mainMs` is the main thread's share.
 */
export function threadCpu(pid) {
  let ticks = 0;
  let ns = 0;
  let mainNs = 0;
  let precise = true;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
      try {
        const run = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
        ns += run;
        if (tid === String(pid)) mainNs = run;
      } catch {
        precise = false;
      }
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  const statMs = (ticks * 1000) / CLK_TCK;
  return { ms: precise ? ns / 1e6 : statMs, statMs, mainMs: precise ? mainNs / 1e6 : Number.NaN };
}

/** { rss, hwm } in MiB from /proc/<pid>/status: resident now, and the peak since start. */
export function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
}

/** A client that records every message with a monotonic time, and can wait for one. */
export class Recorder {
  constructor(client) {
    this.client = client;
    this.messages = [];
    this.waiters = [];
    client.on("message", (topic, payload, packet) => {
      const message = { topic, text: payload.toString(), retain: packet.retain, at: now() };
      this.messages.push(message);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(message)) return true;
        clearTimeout(w.timer);
        w.resolve(message);
        return false;
      });
    });
  }

  static async connect(url, topics) {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: `bench-${process.pid}` });
    // The bench's own client must not add Nagle stalls to what it measures.
    client.stream.setNoDelay(true);
    const recorder = new Recorder(client);
    await client.subscribeAsync(topics, { qos: 1 });
    return recorder;
  }

  /** The next message (from now on) on `topic` that `match` accepts. */
  next(topic, match = () => true, timeoutMs = 30_000) {
    return new Promise((resolve, reject) => {
      const waiter = { match: (m) => m.topic === topic && match(m.text, m), resolve };
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no matching message on ${topic} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  count(topic, from, to = Number.POSITIVE_INFINITY) {
    return this.messages.filter((m) => m.topic === topic && m.at >= from && m.at <= to).length;
  }

  /** Forget what was recorded (a long run would otherwise keep every message). */
  forget() {
    this.messages.length = 0;
  }

  end() {
    return this.client.endAsync();
  }
}

/**
 * Follows a MOCK_GPIO_TRACE file (one JSON line per pin write) through inotify, so the bench sees pin
 * writes as they land: the current duty of every pin, the number of write batches (lines sharing a
 * `t`), and a wait for a predicate on the duties.
 */
export class TraceFollower {
  constructor(file) {
    this.file = file;
    this.offset = 0;
    this.rest = "";
    this.duties = new Map();
    this.batches = 0;
    this.lastT = undefined;
    this.waiters = [];
    if (!existsSync(file)) writeFileSync(file, "");
    this.watcher = watch(file, () => this.read());
  }

  read() {
    const fd = openSync(this.file, "r");
    try {
      const buffer = Buffer.alloc(1 << 16);
      for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        this.rest += buffer.subarray(0, n).toString();
      }
    } finally {
      closeSync(fd);
    }
    const lines = this.rest.split("\n");
    this.rest = lines.pop() ?? "";
    for (const line of lines) {
      if (!line) continue;
      const { t, pin, duty } = JSON.parse(line);
      if (t !== this.lastT) this.batches++;
      this.lastT = t;
      this.duties.set(pin, duty);
    }
    const at = now();
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(this.duties)) return true;
      clearTimeout(w.timer);
      w.resolve(at);
      return false;
    });
  }

  /** Resolves with the time the duties first satisfied `match` (now, if they already do). */
  until(match, timeoutMs = 30_000) {
    this.read();
    if (match(this.duties)) return Promise.resolve(now());
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve };
      waiter.timer = setTimeout(() => reject(new Error(`pins never matched in ${this.file}`)), timeoutMs);
      this.waiters.push(waiter);
    });
  }

  close() {
    this.watcher.close();
  }
}

export const percentile = (sorted, p) =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
export const median = (values) =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );

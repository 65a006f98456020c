// What systemd's watchdog costs an idle lamp. Node cannot send on the notify socket, so every `WATCHDOG=1`
// spawns systemd-notify (src/systemd/notify.ts); `npm run bench` runs without systemd and never sees it.
// The built agent (mock driver, idle, connected to a Mosquitto of its own) runs once with no watchdog and
// once pinging every 100 ms into a stand-in for systemd's socket (test/helpers/notify-socket.py), so the
// pings' cost stands well above the clock ticks; the difference per ping, the agent's own CPU (all its
// threads) plus its children's, is then scaled to the unit's WatchdogSec.
//
//   npm run build && node bench/watchdog.mjs [seconds per run]    needs systemd-notify and python3
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import {
  childrenCpuMs,
  ROOT,
  sleep,
  spawnBuiltAgent,
  startBroker,
  stopChild,
  tempDir,
  threadCpu,
} from "./lib.mjs";

const SECONDS = Number(process.argv[2] ?? 60);
const PING_MS = 100;
const dir = tempDir();

async function startReceiver(socketPath) {
  const child = spawn("python3", [path.join(ROOT, "test/helpers/notify-socket.py"), socketPath], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let pings = 0;
  await new Promise((resolve, reject) => {
    child.once("error", reject);
    createInterface({ input: child.stdout }).on("line", (line) => {
      const message = JSON.parse(line);
      if (message.listening !== undefined) resolve();
      else if (message.fields.includes("WATCHDOG=1")) pings++;
    });
  });
  return { pings: () => pings, stop: () => child.kill("SIGKILL") };
}

async function idle(url, receiver, watchdog) {
  const id = `wd${watchdog ? "on" : "off"}`;
  const child = spawnBuiltAgent(
    dir,
    url,
    id,
    watchdog
      ? { NOTIFY_SOCKET: path.join(dir, "notify.sock"), WATCHDOG_USEC: String(2 * PING_MS * 1000) }
      : {},
  );
  try {
    // Past the start: the code cache is written at 5 s (src/code-cache.ts) and V8 settles after it.
    await sleep(10_000);
    const from = {
      own: threadCpu(child.pid).ms,
      children: childrenCpuMs(child.pid),
      pings: receiver.pings(),
    };
    await sleep(SECONDS * 1000);
    const to = { own: threadCpu(child.pid).ms, children: childrenCpuMs(child.pid), pings: receiver.pings() };
    return {
      ownMs: to.own - from.own,
      childrenMs: to.children - from.children,
      pings: to.pings - from.pings,
    };
  } finally {
    await stopChild(child);
  }
}

const broker = await startBroker(dir);
const receiver = await startReceiver(path.join(dir, "notify.sock"));
try {
  const off = await idle(broker.url, receiver, false);
  const on = await idle(broker.url, receiver, true);
  const perPing = {
    ownMs: (on.ownMs - off.ownMs) / on.pings,
    childrenMs: (on.childrenMs - off.childrenMs) / on.pings,
  };
  const pingMs = perPing.ownMs + perPing.childrenMs;
  const idlePerMinute = (off.ownMs / SECONDS) * 60;
  const lines = [
    `idle agent, no watchdog: ${idlePerMinute.toFixed(1)} ms of CPU a minute`,
    `one watchdog ping: ${pingMs.toFixed(2)} ms (agent ${perPing.ownMs.toFixed(2)}, systemd-notify ${perPing.childrenMs.toFixed(2)}), over ${on.pings} pings`,
    ...[20, 60, 180].map((sec) => {
      const perMinute = (60 / (sec / 2)) * pingMs;
      return `WatchdogSec=${sec}s (a ping every ${sec / 2} s): ${perMinute.toFixed(1)} ms a minute, ${((100 * perMinute) / idlePerMinute).toFixed(0)} % of the idle agent's own`;
    }),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  process.stdout.write(
    `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, off, on, perPing, idlePerMinute })}\n`,
  );
} finally {
  receiver.stop();
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
}

// The floor: the least an MQTT.js lamp can do. Same session, Will, presence and QoS as the agent, but
// every command is republished as-is on `changed`: no parsing, no state, no pins. Whatever the agent
// costs above this is the agent's own doing.
//   MQTT_URL=mqtt://127.0.0.1:1883 LAMP_ID=x node bench/floor-echo.mjs
// bench/run.mjs also runs it bundled and started as the agent is (`node scripts/build.mjs --floor DIR`):
// the floor of a start, which pays for loading MQTT.js as the agent does.
//
// With FLOOR_STATE_FILE it is also the floor of a lamp that keeps its state as CONTRACT.md section 8
// asks: the last payload saved durably (a temp file, its fsync, a rename, the directory's fsync; both
// fsyncs in libuv's thread pool so the loop never waits for the disk), the first change after a quiet
// second at once, later ones coalesced to one save a second. A persisting lamp cannot do less, so what
// the agent costs above this floor is its own; what it costs above the bare echo includes the save.
import { closeSync, fsync, openSync, renameSync, writeSync } from "node:fs";
import path from "node:path";
import mqtt from "mqtt";

const stateFile = process.env.FLOOR_STATE_FILE;
const SAVE_INTERVAL_MS = 1000;
let pending;
let busy = false;
let savedAt = Number.NEGATIVE_INFINITY;

function save(payload) {
  pending = payload;
  if (busy) return;
  busy = true;
  const delay = savedAt + SAVE_INTERVAL_MS - Date.now();
  // setImmediate, as the agent's store: it runs in the same turn of the loop as the command's read.
  if (delay <= 0) setImmediate(write);
  else setTimeout(write, delay);
}

function write() {
  const bytes = pending;
  pending = undefined;
  savedAt = Date.now();
  const temp = `${stateFile}.tmp`;
  const fd = openSync(temp, "w", 0o644);
  writeSync(fd, bytes);
  fsync(fd, () => {
    closeSync(fd);
    renameSync(temp, stateFile);
    const dir = openSync(path.dirname(stateFile), "r");
    fsync(dir, () => {
      closeSync(dir);
      busy = false;
      if (pending) save(pending);
    });
  });
}

const id = process.env.LAMP_ID ?? "floor";
const base = `lamp/${id}`;
const presence = `state/${id}`;
const client = mqtt.connect(process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883", {
  clientId: `floor-${id}`,
  protocolVersion: 5,
  clean: false,
  properties: { sessionExpiryInterval: 3600 },
  will: { topic: presence, payload: Buffer.from("0"), qos: 1, retain: true },
  // As the agent (src/mqtt/client-options.ts): otherwise MQTT.js fills a 6 MB cache at its first write.
  writeCache: false,
});
client.on("connect", (connack) => {
  // MQTT.js leaves Nagle on; a fair floor turns it off, as the broker does (set_tcp_nodelay).
  client.stream.setNoDelay?.(true);
  // `1` once the lamp listens, as CONTRACT.md section 2 asks and the agent does: at once when the broker
  // kept the session (and the subscription with it; the backlog follows), else once it is granted.
  const online = () => client.publish(presence, "1", { qos: 1, retain: true });
  if (connack.sessionPresent) online();
  client.subscribe(`${base}/set_config`, { qos: 1, nl: true }, () => {
    if (!connack.sessionPresent) online();
  });
});
client.on("message", (_topic, payload) => {
  client.publish(`${base}/changed`, payload, { qos: 1, retain: true });
  if (stateFile) save(payload);
});

client.on("error", (error) => process.stderr.write(`floor-echo: ${error.message}\n`));
process.on("SIGTERM", () => {
  if (!client.connected) process.exit(0);
  // Bounded, like the agent: a broker that never acknowledges must not keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
  client.publish(presence, "0", { qos: 1, retain: true }, () => client.end(() => process.exit(0)));
});

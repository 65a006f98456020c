import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { startAgent } from "../helpers/agent.js";
import { hasMosquitto, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { MAIN, ROOT } from "../helpers/process.js";
import { aclFile, lampAcl, passwordFile, tlsListener } from "../helpers/secure-broker.js";
import { teardown } from "../helpers/teardown.js";

/** Distinctive, so any leak is found by a plain substring search of everything printed. */
const SECRET = "Zebra-Quokka-7731-do-not-print";
const URL_SECRET = "Url-Pangolin-4412-do-not-print";
const suite = hasMosquitto() ? describe : describe.skip;

const track = teardown("all");
let pki: Pki;
let broker: TestBroker;
let work: string;

beforeAll(async () => {
  if (!hasMosquitto()) return;
  pki = makePki();
  track(pki.dir);
  work = track(mkdtempSync(path.join(tmpdir(), "lamp-secrets-")));
  const passwd = passwordFile({ lamp: SECRET, urluser: URL_SECRET, watcher: "w" });
  const acl = aclFile({
    lamp: lampAcl("secretlamp"),
    urluser: lampAcl("urllamp"),
    watcher: ["topic readwrite #"],
  });
  broker = track(
    await startBroker({
      listener: [...tlsListener(pki.ca, pki.server), "allow_anonymous false"],
      config: [`password_file ${passwd}`, `acl_file ${acl}`],
    }),
  );
});

interface Run {
  readonly child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function run(args: string[], env: Record<string, string>, script = MAIN): Run {
  let output = "";
  const child = spawn(process.execPath, [script, ...args], {
    cwd: work,
    // Only what we give it, plus PATH: no .env, no inherited LOG_LEVEL.
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** A private key copied with the permissions a careless `cp` or umask gives it. */
function openKey(): { cert: string; key: string } {
  const identity = pki.client("secretlamp");
  const key = path.join(work, "lamp.key");
  copyFileSync(identity.key, key);
  chmodSync(key, 0o644);
  return { cert: identity.cert, key };
}

suite("secrets never reach a log line or --check, at any level", () => {
  it("--check masks the password and a password in MQTT_URL, and warns about a readable key", async () => {
    const { cert, key } = openKey();
    const check = run(["--check"], {
      MQTT_URL: `mqtts://urluser:${URL_SECRET}@localhost:${broker.port}`,
      MQTT_USERNAME: "lamp",
      MQTT_PASSWORD: SECRET,
      MQTT_CA_FILE: pki.ca,
      MQTT_CERT_FILE: cert,
      MQTT_KEY_FILE: key,
      LAMP_ID: "secretlamp",
      GPIO_DRIVER: "mock",
      LOG_LEVEL: "trace",
      DEBUG: "*",
    });
    expect(await check.exited).toBe(0);
    const out = check.output();
    expect(out).toContain("MQTT_PASSWORD=********");
    expect(out).toContain(`MQTT_URL=mqtts://urluser:********@localhost:${broker.port}`);
    expect(out).toMatch(
      /warning: MQTT_KEY_FILE=\S+lamp\.key is open to everyone \(mode 0644\): make it private/,
    );
    expect(out).not.toContain(SECRET);
    expect(out).not.toContain(URL_SECRET);
  });

  it("lampctl with DEBUG=* connects with the password and never prints it", async () => {
    const ctl = run(
      ["--id", "secretlamp"],
      {
        MQTT_URL: `mqtts://localhost:${broker.port}`,
        MQTT_USERNAME: "lamp",
        MQTT_PASSWORD: SECRET,
        MQTT_CA_FILE: pki.ca,
        DEBUG: "*",
      },
      path.join(ROOT, "dist", "cli", "lampctl.js"),
    );
    await ctl.exited;
    const out = ctl.output();
    // It got as far as the broker (mqtt-packet's CONNECT is where the password would be printed), with
    // MQTT.js's debug output on: DEBUG loads the real `debug` in the bundle (scripts/build.mjs).
    expect(out).toMatch(/mqttjs/);
    expect(out).not.toContain(SECRET);
  });

  it("an invalid configuration does not echo the password either", async () => {
    const check = run(["--check"], { MQTT_PASSWORD: SECRET, MQTT_KEEPALIVE: "never", GPIO_DRIVER: "mock" });
    expect(await check.exited).toBe(2);
    expect(check.output()).toContain("MQTT_KEEPALIVE");
    expect(check.output()).not.toContain(SECRET);
  });

  it("the running agent at LOG_LEVEL=trace with DEBUG=mqttjs*: connects, works, warns, and never prints the password", async () => {
    const credentials = mkdtempSync(path.join(work, "cred-"));
    writeFileSync(path.join(credentials, "mqtt"), `${SECRET}\n`, { mode: 0o644 });
    chmodSync(path.join(credentials, "mqtt"), 0o644);
    const agent = run([], {
      MQTT_URL: `mqtts://localhost:${broker.port}`,
      MQTT_USERNAME: "lamp",
      MQTT_PASSWORD_FILE: "mqtt",
      CREDENTIALS_DIRECTORY: credentials,
      MQTT_CA_FILE: pki.ca,
      LAMP_ID: "secretlamp",
      GPIO_DRIVER: "mock",
      STATE_FILE: path.join(work, "state.json"),
      LOG_LEVEL: "trace",
      LOG_FORMAT: "json",
      DEBUG: "mqttjs*",
    });
    const watcher = await Recorder.connect(
      `mqtts://localhost:${broker.port}`,
      ["state/secretlamp", "lamp/secretlamp/#"],
      {
        ca: readFileSync(pki.ca),
        username: "watcher",
        password: "w",
      },
    );
    try {
      await watcher.wait("state/secretlamp", (t) => t === "1");
      await watcher.publish("lamp/secretlamp/set_config", '{"brightness": 0.3, "client": "ui"}');
      await watcher.wait("lamp/secretlamp/changed", (t) => JSON.parse(t).brightness === 0.3);
      await watcher.publish("lamp/secretlamp/set_config", '{"nonsense": true}');
      await watcher.wait("lamp/secretlamp/error");
    } finally {
      agent.child.kill("SIGTERM");
      await agent.exited;
      await watcher.end();
    }
    const out = agent.output();
    const lines = out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(
      lines.some((l) => l.level === 40 && /MQTT_PASSWORD_FILE=\S+ is open to everyone/.test(String(l.msg))),
    ).toBe(true);
    // MQTT.js's own debug output is routed to trace and was really produced (its CONNECT packet included).
    const connect = lines.find((l) => String(l.mqttjs ?? "").includes("cmd: 'connect'"));
    expect(connect?.mqttjs).toContain("password: '********'");
    expect(out).not.toContain(SECRET);
  });

  it("in-process at trace: a password in MQTT_URL and a wrong password are never logged", async () => {
    const good = await startAgent(
      `mqtts://urluser:${URL_SECRET}@localhost:${broker.port}`,
      { LAMP_ID: "urllamp", MQTT_CA_FILE: pki.ca },
      { level: "trace" },
    );
    const wrong = await startAgent(
      `mqtts://localhost:${broker.port}`,
      { LAMP_ID: "wronglamp", MQTT_CA_FILE: pki.ca, MQTT_USERNAME: "lamp", MQTT_PASSWORD: `${SECRET}-wrong` },
      { level: "trace", backoff: { initialMs: 100, maxMs: 200 } },
    );
    try {
      await vi.waitFor(() => {
        expect(good.logs.some((l) => l.msg === "connected to the broker")).toBe(true);
        expect(wrong.logs.some((l) => l.msg === "MQTT connection problem")).toBe(true);
        expect(wrong.logs.filter((l) => l.msg === "reconnecting").length).toBeGreaterThanOrEqual(2);
      });
    } finally {
      await good.stop();
      await wrong.stop();
    }
    const text = JSON.stringify([...good.logs, ...wrong.logs]);
    expect(text).toContain("urluser:********@localhost");
    expect(text).toContain("mqtt.js");
    expect(text).not.toContain(URL_SECRET);
    expect(text).not.toContain(SECRET);
  });
});

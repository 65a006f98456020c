import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { type RunningAgent, startAgent } from "../helpers/agent.js";
import { freePort, hasMosquitto, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { RefusingBroker } from "../helpers/refusing-broker.js";
import { aclFile, lampAcl, passwordFile, setPassword, tlsListener } from "../helpers/secure-broker.js";
import { teardown } from "../helpers/teardown.js";

// Everything here configures a real Mosquitto; Aedes (the fallback) has no TLS listener or ACL file.
const suite = hasMosquitto() ? describe : describe.skip;

const FAST = { initialMs: 100, maxMs: 1000 };
/** The state the lamp restores at start in every failure test, so "the lamp keeps working" is checkable. */
const RESTORED = { on: true, color: { h: 0.33, s: 1 }, brightness: 0.5 };

const trackAll = teardown("all");
const track = teardown("each");
let pki: Pki;
let counter = 0;

beforeAll(() => {
  if (!hasMosquitto()) return;
  pki = makePki();
  trackAll(pki.dir);
});

async function broker(options: Parameters<typeof startBroker>[0]): Promise<TestBroker> {
  return track(await startBroker(options));
}

function newId(): string {
  return `sec${process.pid}x${++counter}`;
}

async function lamp(url: string, env: Record<string, string>, backoff = FAST): Promise<RunningAgent> {
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-sec-state-"));
  const stateFile = path.join(dir, "state.json");
  writeFileSync(stateFile, JSON.stringify({ version: 1, state: RESTORED }));
  return track(await startAgent(url, { STATE_FILE: stateFile, ...env }, { backoff }));
}

async function watch(url: string, topics: string[], options: Parameters<typeof Recorder.connect>[2] = {}) {
  return track(await Recorder.connect(url, topics, options));
}

const problems = (agent: RunningAgent) => agent.logs.filter((l) => l.msg === "MQTT connection problem");
const retries = (agent: RunningAgent) => agent.logs.filter((l) => l.msg === "reconnecting").length;

/** The lamp works without the broker: pins open (a write is accepted), showing the restored state. */
async function expectLampWorking(agent: RunningAgent): Promise<void> {
  expect(agent.agent.state).toEqual(RESTORED);
  const duties = [...agent.driver.duties];
  expect(duties[1]).toBeGreaterThan(0);
  await expect(agent.driver.write(duties)).resolves.toBeUndefined();
  expect(agent.driver.duties).toEqual(duties);
}

suite("TLS, certificates and credentials on a real Mosquitto", () => {
  it("mqtts:// with MQTT_CA_FILE verifies the broker by IP and by host name", async () => {
    const b = await broker({ listener: [...tlsListener(pki.ca, pki.server), "allow_anonymous true"] });
    for (const host of ["127.0.0.1", "localhost"]) {
      const id = newId();
      const url = `mqtts://${host}:${b.port}`;
      const agent = await lamp(url, { LAMP_ID: id, MQTT_CA_FILE: pki.ca });
      const watcher = await watch(url, [`state/${id}`, `lamp/${id}/#`], { ca: readFileSync(pki.ca) });
      await watcher.wait(`state/${id}`, (t) => t === "1");
      await watcher.publish(`lamp/${id}/set_config`, '{"brightness": 0.25, "client": "ui"}');
      await watcher.wait(`lamp/${id}/changed`, (t) => JSON.parse(t).brightness === 0.25);
      expect(problems(agent)).toEqual([]);
    }
  });

  it("client certificates as identity (require_certificate, use_identity_as_username) with an ACL", async () => {
    const id = newId();
    const acl = aclFile({ [id]: lampAcl(id), watcher: ["topic readwrite #"] });
    const b = await broker({
      listener: [
        ...tlsListener(pki.ca, pki.server, ["require_certificate true", "use_identity_as_username true"]),
        "allow_anonymous false",
      ],
      config: [`acl_file ${acl}`],
    });
    const url = `mqtts://localhost:${b.port}`;
    const own = pki.client(id);
    const agent = await lamp(url, {
      LAMP_ID: id,
      MQTT_CA_FILE: pki.ca,
      MQTT_CERT_FILE: own.cert,
      MQTT_KEY_FILE: own.key,
    });
    const w = pki.client("watcher");
    const watcher = await watch(url, [`state/${id}`, `lamp/${id}/#`, "homeassistant/#"], {
      ca: readFileSync(pki.ca),
      cert: readFileSync(w.cert),
      key: readFileSync(w.key),
    });
    await watcher.wait(`state/${id}`, (t) => t === "1");
    await watcher.wait(`homeassistant/light/${id}/config`);
    await watcher.publish(`lamp/${id}/set_config`, '{"on": false, "client": "ui"}');
    await watcher.wait(`lamp/${id}/changed`, (t) => JSON.parse(t).on === false);
    await sleep(200);
    // Within its ACL nothing is refused.
    expect(agent.logs.filter((l) => Number(l.level) >= 50)).toEqual([]);
  });

  it("user name and password from MQTT_PASSWORD_FILE, a systemd credential", async () => {
    const id = newId();
    const passwd = passwordFile({ [id]: "correct horse battery staple", watcher: "w" });
    const acl = aclFile({ [id]: lampAcl(id), watcher: ["topic readwrite #"] });
    const b = await broker({
      config: ["allow_anonymous false", `password_file ${passwd}`, `acl_file ${acl}`],
    });
    const credentials = mkdtempSync(path.join(tmpdir(), "lamp-cred-"));
    writeFileSync(path.join(credentials, "mqtt-password"), "correct horse battery staple\n", { mode: 0o600 });
    const agent = await lamp(b.url, {
      LAMP_ID: id,
      MQTT_USERNAME: id,
      MQTT_PASSWORD_FILE: "mqtt-password",
      CREDENTIALS_DIRECTORY: credentials,
    });
    const watcher = await watch(b.url, [`state/${id}`, `lamp/${id}/#`], {
      username: "watcher",
      password: "w",
    });
    await watcher.wait(`state/${id}`, (t) => t === "1");
    await watcher.publish(`lamp/${id}/set_config`, '{"brightness": 0.75, "client": "ui"}');
    await watcher.wait(`lamp/${id}/changed`, (t) => JSON.parse(t).brightness === 0.75);
    expect(problems(agent)).toEqual([]);
  });

  it("reports a publish the ACL refuses, with the MQTT 5 reason code, and stays connected", async () => {
    const id = newId();
    const passwd = passwordFile({ [id]: "pw", watcher: "w" });
    // The lamp may announce itself but not publish its state.
    const acl = aclFile({
      [id]: [`topic write state/${id}`, `topic read lamp/${id}/set_config`],
      watcher: ["topic readwrite #"],
    });
    const b = await broker({
      config: ["allow_anonymous false", `password_file ${passwd}`, `acl_file ${acl}`],
    });
    const agent = await lamp(b.url, {
      LAMP_ID: id,
      MQTT_USERNAME: id,
      MQTT_PASSWORD: "pw",
      HA_DISCOVERY: "false",
    });
    const watcher = await watch(b.url, [`state/${id}`], { username: "watcher", password: "w" });
    await watcher.wait(`state/${id}`, (t) => t === "1");
    await vi.waitFor(
      () => {
        const publish = agent.logs.find((l) => l.msg === "could not publish the state");
        expect(publish).toMatchObject({ topic: `lamp/${id}/changed`, level: 40 });
        expect(String(publish?.cause)).toMatch(/Not authorized \(reason code 135\)/);
      },
      { timeout: 5000 },
    );
    // Commands are still heard and applied; only the state cannot be told.
    await watcher.publish(`lamp/${id}/set_config`, '{"brightness": 0.2, "client": "ui"}');
    await vi.waitFor(() => expect(agent.agent.state?.brightness).toBe(0.2));
    expect(problems(agent)).toEqual([]);
  });

  it.each([
    ["5", "not authorized (reason code 135)"],
    ["3.1.1", "unspecified error (reason code 128)"],
  ])("reports a refused subscription (MQTT %s: %s)", async (protocol, cause) => {
    const refusing = track(await new RefusingBroker().start());
    const id = newId();
    const agent = await lamp(refusing.url, { LAMP_ID: id, MQTT_PROTOCOL: protocol, HA_DISCOVERY: "false" });
    await vi.waitFor(
      () => {
        const line = agent.logs.find(
          (l) => String(l.msg).includes("refused to let us subscribe") && l.topic === `lamp/${id}/set_config`,
        );
        expect(line).toMatchObject({ topic: `lamp/${id}/set_config`, level: 50 });
        expect(String(line?.cause)).toBe(`refused: ${cause}`);
      },
      { timeout: 5000 },
    );
  });
});

interface Fault {
  readonly name: string;
  /** Sets the broker up wrong; returns the agent's URL and env, and how to fix the fault. */
  setup(id: string): Promise<{ url: string; env: Record<string, string>; fix: () => Promise<void> }>;
  readonly cause: RegExp;
}

async function tlsBrokerOn(port: number, server = pki.server): Promise<TestBroker> {
  return broker({ port, listener: [...tlsListener(pki.ca, server), "allow_anonymous true"] });
}

const faults: Fault[] = [
  {
    name: "wrong CA",
    cause: /not signed by the CA in MQTT_CA_FILE=.*SELF_SIGNED_CERT_IN_CHAIN/,
    async setup() {
      const b = await tlsBrokerOn(await freePort());
      const caFile = path.join(mkdtempSync(path.join(tmpdir(), "lamp-ca-")), "ca.crt");
      copyFileSync(pki.otherCa, caFile);
      // The fix is on the lamp's side: the right CA file, picked up at the next retry without a restart.
      return {
        url: `mqtts://localhost:${b.port}`,
        env: { MQTT_CA_FILE: caFile },
        fix: async () => copyFileSync(pki.ca, caFile),
      };
    },
  },
  {
    name: "expired server certificate",
    cause: /the broker's certificate has expired \(CERT_HAS_EXPIRED\)/,
    async setup() {
      const b = await tlsBrokerOn(await freePort(), pki.expiredServer);
      return {
        url: `mqtts://localhost:${b.port}`,
        env: { MQTT_CA_FILE: pki.ca },
        fix: async () => {
          await b.stop();
          await tlsBrokerOn(b.port);
        },
      };
    },
  },
  {
    name: "server certificate for another name",
    cause: /the broker's certificate is not for "localhost" \(ERR_TLS_CERT_ALTNAME_INVALID/,
    async setup() {
      const b = await tlsBrokerOn(await freePort(), pki.mismatchedServer);
      return {
        url: `mqtts://localhost:${b.port}`,
        env: { MQTT_CA_FILE: pki.ca },
        fix: async () => {
          await b.stop();
          await tlsBrokerOn(b.port);
        },
      };
    },
  },
  {
    name: "expired client certificate",
    cause: /refused our client certificate: it has expired/,
    async setup(id) {
      const b = await broker({
        listener: [
          ...tlsListener(pki.ca, pki.server, ["require_certificate true", "use_identity_as_username true"]),
          "allow_anonymous false",
        ],
      });
      const dir = mkdtempSync(path.join(tmpdir(), "lamp-client-"));
      const cert = path.join(dir, "lamp.crt");
      const key = path.join(dir, "lamp.key");
      const expired = pki.client(id, { expired: true });
      copyFileSync(expired.cert, cert);
      copyFileSync(expired.key, key);
      return {
        url: `mqtts://localhost:${b.port}`,
        env: { MQTT_CA_FILE: pki.ca, MQTT_CERT_FILE: cert, MQTT_KEY_FILE: key },
        // A renewed certificate written in place is used at the next retry.
        fix: async () => {
          const renewed = pki.client(id);
          copyFileSync(renewed.key, key);
          copyFileSync(renewed.cert, cert);
        },
      };
    },
  },
  {
    name: "wrong password",
    cause: /the broker refused the login: (bad user name or password|not authorized) \(reason code 13[45]\)/,
    async setup(id) {
      const passwd = passwordFile({ [id]: "the-right-one" });
      const b = await broker({ config: ["allow_anonymous false", `password_file ${passwd}`] });
      return {
        url: b.url,
        env: { MQTT_USERNAME: id, MQTT_PASSWORD: "a-wrong-one" },
        fix: async () => {
          setPassword(passwd, id, "a-wrong-one");
          await b.stop();
          await b.restart();
        },
      };
    },
  },
  {
    name: "broker unreachable",
    cause: /nothing accepts connections at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    async setup() {
      const port = await freePort();
      return {
        url: `mqtt://127.0.0.1:${port}`,
        env: {},
        fix: async () => {
          await broker({ port });
        },
      };
    },
  },
  {
    name: "TLS to a plain port",
    cause: /closed the connection during the TLS handshake .*is this a TLS port\?/,
    async setup() {
      const b = await broker({});
      return {
        url: `mqtts://127.0.0.1:${b.port}`,
        env: { MQTT_CA_FILE: pki.ca },
        fix: async () => {
          await b.stop();
          await tlsBrokerOn(b.port);
        },
      };
    },
  },
];

suite("failure modes: one clear line, the agent retries with backoff, the lamp keeps working", () => {
  it.each(faults.map((f) => [f.name, f] as const))("%s", async (_name, fault) => {
    const id = newId();
    const { url, env, fix } = await fault.setup(id);
    const agent = await lamp(url, { LAMP_ID: id, ...env });
    // Several attempts fail with the same cause: logged once, retried with growing delays.
    await vi.waitFor(() => expect(retries(agent)).toBeGreaterThanOrEqual(4), {
      timeout: 10_000,
      interval: 50,
    });
    const lines = problems(agent);
    expect(lines, JSON.stringify(lines)).toHaveLength(1);
    expect(String(lines[0]?.cause)).toMatch(fault.cause);
    expect(lines[0]?.level).toBe(50);
    const tries = agent.logs.filter((l) => l.msg === "reconnecting");
    const delays = tries.map((l) => Number(l.inMs));
    const ceilings = tries.map((l) => Number(l.ceilingMs));
    // Ceilings of 800 then 1000 ms, each delay drawn below its own: the backoff grows and is capped.
    expect(ceilings[1]).toBeGreaterThan(ceilings[0] as number);
    for (const [i, delay] of delays.entries()) expect(delay).toBeLessThanOrEqual(ceilings[i] as number);
    expect(Math.max(...delays)).toBeLessThanOrEqual(FAST.maxMs);
    expect(agent.logs.some((l) => l.msg === "connected to the broker")).toBe(false);
    await expectLampWorking(agent);

    await fix();
    await vi.waitFor(() => expect(agent.logs.some((l) => l.msg === "connected to the broker")).toBe(true), {
      timeout: 10_000,
      interval: 50,
    });
    await expectLampWorking(agent);
  });
});

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { type RunningAgent, startAgent } from "../helpers/agent.js";
import { hasMosquitto, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { tlsListener } from "../helpers/secure-broker.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";
import { teardown } from "../helpers/teardown.js";

// Two real Mosquitto processes: the lamp's own, bridged with the shipped docs/fleet/lamp-bridge.conf to a
// central one that requires TLS client certificates. Aedes has no bridge, so this needs Mosquitto.
const suite = hasMosquitto() ? describe : describe.skip;
const EXAMPLE = path.resolve(import.meta.dirname, "../../docs/fleet/lamp-bridge.conf");

/** The shipped example, with this test's id, address and files; listener lines come from the helper. */
function bridgeConfig(
  id: string,
  address: string,
  pki: Pki,
  bridge: { cert: string; key: string },
): string[] {
  return readFileSync(EXAMPLE, "utf8")
    .split("\n")
    .filter((line) => !/^(listener|allow_anonymous)\b/.test(line))
    .map((line) =>
      line
        .replaceAll("LAMP_ID", id)
        .replace("central.example.net:8883", address)
        .replace("/etc/mosquitto/certs/central-ca.crt", pki.ca)
        .replace(`/etc/mosquitto/certs/${id}.crt`, bridge.cert)
        .replace(`/etc/mosquitto/certs/${id}.key`, bridge.key)
        // The example backs off from 2 s up to 30 s; a test has no time for the jitter.
        .replace(/^restart_timeout .*/, "restart_timeout 1"),
    );
}

/** Kills a test broker without warning, like a crash or the OOM killer: no clean bridge shutdown. */
function killHard(broker: TestBroker): void {
  const pid = execFileSync("pgrep", ["-f", path.join(broker.dir, "mosquitto.conf")], {
    encoding: "utf8",
  }).trim();
  for (const one of pid.split("\n").filter(Boolean)) process.kill(Number(one), "SIGKILL");
}

suite("a fleet: the lamp's broker bridged to a central one under devices/<id>/", () => {
  const id = `fleet${process.pid}`;
  const central = {
    command: `devices/${id}/lamp/set_config`,
    state: `devices/${id}/lamp/changed`,
    presence: `devices/${id}/state`,
    bridge: `devices/${id}/bridge`,
  };
  const track = teardown("all");
  let pki: Pki;
  let centralBroker: TestBroker;
  let localBroker: TestBroker;
  let proxy: TcpProxy;
  let agent: RunningAgent;
  let watcher: Recorder;
  let watcherOptions: Parameters<typeof Recorder.connect>[2];
  const centralUrl = () => `mqtts://localhost:${centralBroker.port}`;
  const watch = () => Recorder.connect(centralUrl(), [`devices/${id}/#`], watcherOptions);

  beforeAll(async () => {
    pki = makePki();
    track(pki.dir);
    centralBroker = track(
      await startBroker({
        listener: [
          ...tlsListener(pki.ca, pki.server, ["require_certificate true", "use_identity_as_username true"]),
          "allow_anonymous false",
        ],
      }),
    );
    // The bridge reaches the central broker through a proxy, so the network between them can fail.
    proxy = track(await new TcpProxy(centralBroker.port).start());
    localBroker = track(
      await startBroker({
        config: bridgeConfig(id, `localhost:${proxy.port}`, pki, pki.client(`bridge-${id}`)),
      }),
    );
    agent = track(
      await startAgent(
        localBroker.url,
        { LAMP_ID: id, TELEMETRY_INTERVAL: "1" },
        { backoff: { initialMs: 200, maxMs: 1000 } },
      ),
    );
    const w = pki.client("watcher");
    watcherOptions = { ca: readFileSync(pki.ca), cert: readFileSync(w.cert), key: readFileSync(w.key) };
    watcher = await watch();
    // A test replaces the watcher: end whichever is current.
    track(() => watcher.end().catch(() => undefined));
  });

  const last = (recorder: Recorder, topic: string) => recorder.on(topic).at(-1)?.text;

  it("the lamp's presence, state and the bridge's own state are visible centrally", async () => {
    await watcher.wait(central.bridge, (t) => t === "1");
    await watcher.wait(central.presence, (t) => t === "1");
    const state = JSON.parse((await watcher.wait(central.state)).text);
    expect(state).toEqual({ on: true, color: { h: 0, s: 0 }, brightness: 1, client: `lamp-${id}` });
    // The diagnostics too: what the lamp is, retained, and how it is doing.
    expect(JSON.parse((await watcher.wait(`devices/${id}/lamp/info`)).text)).toMatchObject({ id });
    expect(JSON.parse((await watcher.wait(`devices/${id}/lamp/telemetry`)).text)).toHaveProperty("uptime_s");
  });

  it("a command published on the central broker reaches the lamp, and its state comes back", async () => {
    await watcher.publish(central.command, '{"brightness": 0.4, "client": "fleet-ui"}');
    const back = await watcher.wait(central.state, (t) => JSON.parse(t).client === "fleet-ui");
    expect(JSON.parse(back.text)).toMatchObject({ brightness: 0.4 });
    expect(agent.agent.state?.brightness).toBe(0.4);
  });

  it("the network to the central broker fails: the bridge's Will says 0 at once; back, everything flows again", async () => {
    const down = watcher.next(central.bridge, (t) => t === "0");
    proxy.refuse();
    proxy.cut();
    await down;
    // The lamp itself never noticed: its own broker is fine.
    expect(agent.agent.mqtt?.connected).toBe(true);
    const up = watcher.next(central.bridge, (t) => t === "1");
    proxy.restore();
    await up;
    await watcher.publish(central.command, '{"brightness": 0.5, "client": "after-outage"}');
    await watcher.wait(central.state, (t) => JSON.parse(t).client === "after-outage");
  });

  it("the lamp's broker dies: central sees the bridge's 0; restarted, presence and state are re-announced", async () => {
    const down = watcher.next(central.bridge, (t) => t === "0");
    killHard(localBroker);
    await down;
    // The lamp's own presence cannot change centrally (its Will fires on the dead broker): read the
    // lamp as online only while devices/<id>/bridge is 1 too. That is what docs/fleet.md says.
    expect(last(watcher, central.presence)).toBe("1");
    await vi.waitFor(() =>
      expect(agent.logs.some((l) => String(l.msg).startsWith("lost the broker"))).toBe(true),
    );
    // The lamp keeps its state and pins meanwhile.
    expect(agent.agent.state?.brightness).toBe(0.5);

    const presence = watcher.next(central.presence, (t) => t === "1");
    const state = watcher.next(central.state, (t) => JSON.parse(t).client === `lamp-${id}`);
    const bridge = watcher.next(central.bridge, (t) => t === "1");
    await localBroker.restart();
    await Promise.all([presence, state, bridge]);
    expect(JSON.parse(last(watcher, central.state) ?? "{}")).toMatchObject({ brightness: 0.5 });
    await watcher.publish(central.command, '{"brightness": 0.6, "client": "after-restart"}');
    await watcher.wait(central.state, (t) => JSON.parse(t).client === "after-restart");
  });

  it("the central broker restarts and forgets everything: the bridge re-announces presence and state", async () => {
    await watcher.end().catch(() => undefined);
    await centralBroker.stop();
    await centralBroker.restart();
    // A newcomer to the restarted central broker (persistence off) sees the lamp, retained, once the
    // bridge is back: the local broker sends its retained messages for "out" topics on every connect.
    watcher = await watch();
    await watcher.wait(central.bridge, (t) => t === "1", 15_000);
    await watcher.wait(central.presence, (t) => t === "1");
    expect(JSON.parse((await watcher.wait(central.state)).text)).toMatchObject({ brightness: 0.6 });
    // And they are retained again there: a later subscriber gets them at once.
    const late = track(
      await Recorder.connect(centralUrl(), [central.presence, central.state], watcherOptions),
    );
    expect(await late.wait(central.presence)).toMatchObject({ text: "1", retain: true });
    expect((await late.wait(central.state)).retain).toBe(true);
    await watcher.publish(central.command, '{"on": false, "client": "after-central-restart"}');
    await watcher.wait(central.state, (t) => JSON.parse(t).client === "after-central-restart");
    expect(agent.agent.state?.on).toBe(false);
  });
});

import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { IClientOptions } from "mqtt";
import { beforeAll, describe, expect, it } from "vitest";
import { type AgentProcess, builtAgentExists, spawnAgent, white } from "../helpers/agent-process.js";
import { hasMosquitto, startBroker } from "../helpers/broker.js";
import { hasNatsServer } from "../helpers/cluster.js";
import { LEVEL } from "../helpers/log.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { startNatsCluster } from "../helpers/nats-cluster.js";
import { passwordFile } from "../helpers/secure-broker.js";
import { type Track, teardown } from "../helpers/teardown.js";

// The per-lamp ACLs docs/fleet.md gives, each file run as it is: docs/fleet/lamp-acl.conf on a real
// Mosquitto, docs/fleet/nats-authorization.conf on a real NATS cluster. One user per lamp, its LAMP_ID
// as user name: lamp A is b827eb000001 (in group kitchen), lamp B is b827eb000002; a controller (Home
// Assistant) may do everything.
const A = "b827eb000001";
const B = "b827eb000002";
const run = promisify(execFile);
const doc = (name: string) => fileURLToPath(new URL(`../../docs/fleet/${name}`, import.meta.url));

interface AclBroker {
  readonly url: string;
  readonly protocolVersion: 4 | 5;
  readonly users: Record<"a" | "b" | "controller", { username: string; password: string }>;
}

async function mosquittoWithAcl(keep: Track): Promise<AclBroker> {
  const users = {
    a: { username: A, password: "pw-a" },
    b: { username: B, password: "pw-b" },
    controller: { username: "controller", password: "pw-c" },
  };
  const dir = keep(mkdtempSync(path.join(tmpdir(), "lamp-fleet-acl-")));
  const acl = path.join(dir, "acl");
  writeFileSync(acl, `${readFileSync(doc("lamp-acl.conf"), "utf8")}\nuser controller\ntopic readwrite #\n`);
  const passwd = passwordFile(Object.fromEntries(Object.values(users).map((u) => [u.username, u.password])));
  keep(path.dirname(passwd));
  const broker = keep(
    await startBroker({
      listener: ["listener {port} 127.0.0.1", "allow_anonymous false"],
      config: [`password_file ${passwd}`, `acl_file ${acl}`],
    }),
  );
  // MQTT 5, as the agent speaks to Mosquitto.
  return { url: broker.url, protocolVersion: 5, users };
}

async function natsWithAuthorization(keep: Track): Promise<AclBroker> {
  const users = {
    a: { username: A, password: "change-me-1" },
    b: { username: B, password: "change-me-2" },
    controller: { username: "homeassistant", password: "change-me-ha" },
  };
  const cluster = keep(
    await startNatsCluster({
      nodes: 3,
      config: [readFileSync(doc("nats-authorization.conf"), "utf8")],
      probeAuth: users.controller,
    }),
  );
  // Lamp and controller on different nodes: permissions hold across the cluster.
  return { url: cluster.url(1), protocolVersion: 4, users };
}

const brokers = [
  {
    name: "Mosquitto (docs/fleet/lamp-acl.conf)",
    missing: hasMosquitto() ? "" : " (skipped: mosquitto is not installed; Aedes has no acl_file)",
    start: mosquittoWithAcl,
  },
  {
    name: "a NATS cluster (docs/fleet/nats-authorization.conf)",
    missing: hasNatsServer() ? "" : " (skipped: nats-server is not installed; .ci/run installs it)",
    start: natsWithAuthorization,
  },
] as const;

for (const { name, missing, start: startAclBroker } of brokers) {
  describe.skipIf(missing !== "")(`the per-lamp ACL on ${name}${missing}`, () => {
    const keep = teardown("all");
    // Clients go after each test: a second login with lamp A's client id would take over the first and
    // fire its Will.
    const track = teardown("each");
    let broker: AclBroker;

    beforeAll(async () => {
      broker = await startAclBroker(keep);
    }, 120_000);

    /** Logged in as `user`, with the agent's client id and its Will. Refused subscriptions are left out. */
    const login = async (user: "a" | "b" | "controller", topics: string[] = []): Promise<Recorder> => {
      const { username, password } = broker.users[user];
      const lamp = user !== "controller";
      const options: IClientOptions = {
        protocolVersion: broker.protocolVersion,
        username,
        password,
        clientId: lamp ? `lamp-${username}` : `controller-${Date.now()}`,
        ...(lamp
          ? { will: { topic: `state/${username}`, payload: Buffer.from("0"), qos: 1, retain: true } }
          : {}),
      };
      const recorder = track(await Recorder.connect(broker.url, [], options));
      // NATS refuses a forbidden subscription (SUBACK 0x80); Mosquitto grants it and delivers nothing.
      for (const topic of topics) await recorder.client.subscribeAsync(topic, { qos: 1 }).catch(() => {});
      return recorder;
    };

    /** Publishes, and says whether the broker took it (a refusal may come as a PUBACK reason code). */
    const publish = (client: Recorder, topic: string, text: string) =>
      client.publish(topic, text).then(
        () => "accepted",
        () => "refused",
      );

    it("lets lamp A publish its own presence, state, info and Home Assistant config", async () => {
      const observer = await login("controller", ["#"]);
      const a = await login("a");
      const own = [
        `state/${A}`,
        `lamp/${A}/changed`,
        `lamp/${A}/error`,
        `lamp/${A}/info`,
        `lamp/${A}/telemetry`,
        `homeassistant/light/${A}/config`,
        `homeassistant/sensor/${A}/uptime/config`,
      ];
      for (const topic of own) await a.publish(topic, `from A on ${topic}`);
      for (const topic of own) await observer.wait(topic, (text) => text === `from A on ${topic}`);
    });

    it("lets lamp A read its own commands, its groups' and Home Assistant's status", async () => {
      const a = await login("a", [
        `lamp/${A}/set_config`,
        "lamp/group/all/set_config",
        "lamp/group/kitchen/set_config",
        "homeassistant/status",
        `state/${A}`,
      ]);
      const controller = await login("controller");
      const readable = [
        `lamp/${A}/set_config`,
        "lamp/group/all/set_config",
        "lamp/group/kitchen/set_config",
        "homeassistant/status",
        `state/${A}`,
      ];
      for (const topic of readable) await controller.publish(topic, `to A on ${topic}`);
      for (const topic of readable) await a.wait(topic, (text) => text === `to A on ${topic}`);
    });

    it("keeps lamp A from commanding lamp B or speaking for B (B's state, presence, info)", async () => {
      const observer = await login("controller", ["#"]);
      const b = await login("b", [`lamp/${B}/set_config`]);
      const a = await login("a");
      const forbidden = [
        `lamp/${B}/set_config`,
        "lamp/group/office/set_config",
        `state/${B}`,
        `lamp/${B}/changed`,
        `lamp/${B}/info`,
        `homeassistant/light/${B}/config`,
      ];
      for (const topic of forbidden) await publish(a, topic, "forged by A");
      // One client's messages arrive in order: once A's own sentinel is in, A's forgeries would be too.
      await a.publish(`state/${A}`, "sentinel");
      await observer.wait(`state/${A}`, (text) => text === "sentinel");
      await b.wait(`lamp/${B}/set_config`, () => false, 200).catch(() => {});
      for (const topic of forbidden)
        expect(observer.on(topic).map((m) => m.text)).not.toContain("forged by A");
      expect(b.on(`lamp/${B}/set_config`)).toEqual([]);
    });

    it("keeps lamp A from reading lamp B's commands and other groups'", async () => {
      const a = await login("a", [
        `lamp/${B}/set_config`,
        "lamp/group/office/set_config",
        `lamp/${A}/set_config`,
      ]);
      const b = await login("b", [`lamp/${B}/set_config`]);
      const controller = await login("controller");
      await controller.publish(`lamp/${B}/set_config`, "for B only");
      await controller.publish("lamp/group/office/set_config", "for the office");
      await controller.publish(`lamp/${A}/set_config`, "sentinel");
      // B hears its own command, so it was sent; A heard its sentinel, sent after both, so it would have
      // heard them by now.
      expect((await b.wait(`lamp/${B}/set_config`)).text).toBe("for B only");
      await a.wait(`lamp/${A}/set_config`, (text) => text === "sentinel");
      expect(a.on(`lamp/${B}/set_config`)).toEqual([]);
      expect(a.on("lamp/group/office/set_config")).toEqual([]);
    });
  });
}

// The built agent itself under docs/fleet/lamp-acl.conf: logged in as its own user, it says everything
// it says (presence, state, info, telemetry, Home Assistant configs) with no refusal in its log, obeys its
// own commands and its groups', and lampctl, as a controller user, drives it.
const LAMPCTL = fileURLToPath(new URL("../../dist/cli/lampctl.js", import.meta.url));

describe.skipIf(!hasMosquitto() || !builtAgentExists())(
  "the built agent under the Mosquitto pattern ACL (docs/fleet/lamp-acl.conf)",
  () => {
    const keep = teardown("all");
    let broker: AclBroker;
    let agent: AgentProcess;
    let observer: Recorder;

    beforeAll(async () => {
      broker = await mosquittoWithAcl(keep);
      const controller = broker.users.controller;
      observer = keep(
        await Recorder.connect(broker.url, [`state/${A}`, `lamp/${A}/#`, `homeassistant/#`], controller),
      );
      agent = keep(
        spawnAgent(
          broker.url,
          {
            MQTT_USERNAME: A,
            MQTT_PASSWORD: broker.users.a.password,
            LAMP_GROUPS: "all,kitchen",
            HA_DISCOVERY: "true",
            TELEMETRY_INTERVAL: "1",
          },
          { id: A },
        ),
      );
      await observer.wait(`state/${A}`, (t) => t === "1", 20_000);
    }, 120_000);

    it("publishes its presence, state, info, telemetry and Home Assistant configs, refused nothing", async () => {
      expect(JSON.parse((await observer.wait(`lamp/${A}/changed`)).text)).toMatchObject({ on: true });
      expect(JSON.parse((await observer.wait(`lamp/${A}/info`)).text)).toMatchObject({ id: A });
      await observer.wait(`lamp/${A}/telemetry`, () => true, 5000);
      expect(observer.messages.some((m) => m.topic.startsWith(`homeassistant/light/${A}/`))).toBe(true);
      expect(agent.logs.filter((l) => l.level >= LEVEL.error)).toEqual([]);
    });

    it("obeys its own commands and its groups' (all, kitchen), and answers each on its own changed", async () => {
      const controller = keep(await Recorder.connect(broker.url, [], broker.users.controller));
      const topics = [`lamp/${A}/set_config`, "lamp/group/all/set_config", "lamp/group/kitchen/set_config"];
      for (const [n, topic] of topics.entries()) {
        const client = `acl-${n}`;
        const brightness = [0.2, 0.3, 0.4][n] as number;
        await controller.publish(topic, white(brightness, client), { qos: 1 });
        const got = await observer.wait(`lamp/${A}/changed`, (t) => t.includes(`"${client}"`));
        expect(JSON.parse(got.text)).toMatchObject({ brightness, client });
      }
      // A group it is not in: not its business (and the ACL would not let it read it anyway).
      await controller.publish("lamp/group/office/set_config", white(0.9, "acl-office"), { qos: 1 });
      await controller.publish(`lamp/${A}/set_config`, white(0.45, "acl-after"), { qos: 1 });
      await observer.wait(`lamp/${A}/changed`, (t) => t.includes('"acl-after"'));
      expect(observer.on(`lamp/${A}/changed`).some((m) => m.text.includes("acl-office"))).toBe(false);
      expect(agent.logs.filter((l) => l.level >= LEVEL.error)).toEqual([]);
    });

    it("is driven by lampctl logged in as a controller", async () => {
      const { stdout } = await run(
        process.execPath,
        [
          LAMPCTL,
          "--url",
          broker.url,
          "--id",
          A,
          "--brightness",
          "0.35",
          "--hue",
          "0.5",
          "--saturation",
          "1",
        ],
        {
          env: {
            PATH: process.env.PATH ?? "",
            MQTT_USERNAME: broker.users.controller.username,
            MQTT_PASSWORD: broker.users.controller.password,
          },
          timeout: 20_000,
        },
      );
      expect(JSON.parse(stdout)).toMatchObject({
        brightness: 0.35,
        color: { h: 0.5, s: 1 },
        client: "lampctl",
      });
      await observer.wait(`lamp/${A}/changed`, (t) => t.includes('"lampctl"'));
    });
  },
);

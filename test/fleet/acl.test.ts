import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { IClientOptions } from "mqtt";
import { beforeAll, describe, expect, it } from "vitest";
import { hasMosquitto, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { passwordFile } from "../helpers/secure-broker.js";
import { teardown } from "../helpers/teardown.js";

// docs/fleet/lamp-acl.conf, the file docs/fleet.md gives, on a real Mosquitto: one user per lamp, its
// LAMP_ID as user name. Lamp A is b827eb000001 (in group kitchen), lamp B is b827eb000002.
const ACL = fileURLToPath(new URL("../../docs/fleet/lamp-acl.conf", import.meta.url));
const A = "b827eb000001";
const B = "b827eb000002";
const PASSWORDS = { [A]: "pw-a", [B]: "pw-b", controller: "pw-c" };

const missing = hasMosquitto() ? "" : " (skipped: mosquitto is not installed; Aedes has no acl_file)";

describe.skipIf(missing !== "")(`the per-lamp ACL of docs/fleet.md on Mosquitto${missing}`, () => {
  const keep = teardown("all");
  // Clients go after each test: a second login with lamp A's client id would take over the first and
  // fire its Will.
  const track = teardown("each");
  let broker: TestBroker;

  beforeAll(async () => {
    const dir = keep(mkdtempSync(path.join(tmpdir(), "lamp-fleet-acl-")));
    const acl = path.join(dir, "acl");
    // The observer that stands for Home Assistant: it sees and sends everything.
    writeFileSync(acl, `${readFileSync(ACL, "utf8")}\nuser controller\ntopic readwrite #\n`);
    const passwd = passwordFile(PASSWORDS);
    keep(path.dirname(passwd));
    broker = keep(
      await startBroker({
        listener: ["listener {port} 127.0.0.1", "allow_anonymous false"],
        config: [`password_file ${passwd}`, `acl_file ${acl}`],
      }),
    );
  });

  /** Logged in as `user`, with the agent's client id and its Will, on MQTT 5 as the agent speaks. */
  const login = async (user: keyof typeof PASSWORDS, topics: string[] = []): Promise<Recorder> => {
    const lamp = user !== "controller";
    const options: IClientOptions = {
      protocolVersion: 5,
      username: user,
      password: PASSWORDS[user],
      clientId: lamp ? `lamp-${user}` : `controller-${Date.now()}`,
      ...(lamp ? { will: { topic: `state/${user}`, payload: Buffer.from("0"), qos: 1, retain: true } } : {}),
    };
    return track(await Recorder.connect(broker.url, topics, options));
  };

  /** Publishes, and says whether the broker took it (a refusal may come as a PUBACK reason code). */
  const publish = (client: Recorder, topic: string, text: string) =>
    client.publish(topic, text).then(
      () => "accepted",
      () => "refused",
    );

  it("lets lamp A publish its own presence, state, info and Home Assistant config", async () => {
    const observer = await login("controller", ["#"]);
    const a = await login(A);
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
    const a = await login(A, [
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
    const b = await login(B, [`lamp/${B}/set_config`]);
    const a = await login(A);
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
    for (const topic of forbidden) expect(observer.on(topic).map((m) => m.text)).not.toContain("forged by A");
    expect(b.on(`lamp/${B}/set_config`)).toEqual([]);
  });

  it("keeps lamp A from reading lamp B's commands and other groups'", async () => {
    const a = await login(A, [
      `lamp/${B}/set_config`,
      "lamp/group/office/set_config",
      `lamp/${A}/set_config`,
    ]);
    const b = await login(B, [`lamp/${B}/set_config`]);
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

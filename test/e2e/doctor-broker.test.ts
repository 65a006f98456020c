import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { spawnAgent as spawnMockAgent } from "../helpers/agent-process.js";
import { freePort, hasMosquitto, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { spawnAgent } from "../helpers/process.js";
import { aclFile, lampAcl, passwordFile } from "../helpers/secure-broker.js";
import { teardown } from "../helpers/teardown.js";

/**
 * `lamp-agent --check` and the broker, against a real Mosquitto: connect, subscribe to the command
 * topic, and a round trip of a command that changes nothing. Exit 1 with one clear line when the broker
 * is unreachable, refuses the login, or would never deliver a command to the lamp.
 */
const suite = hasMosquitto() ? describe : describe.skip;
const track = teardown("all");
const perTest = teardown("each");
const ID = "doctorlamp";
let dir: string;
let open: TestBroker;
let locked: TestBroker;

beforeAll(async () => {
  if (!hasMosquitto()) return;
  dir = track(mkdtempSync(path.join(tmpdir(), "lamp-doctor-broker-")));
  open = track(await startBroker());
  const passwd = track(
    passwordFile({ [ID]: "lamp-secret", deaf: "deaf-secret", writer: "w", observer: "o" }),
  );
  const acl = track(
    aclFile({
      [ID]: lampAcl(ID),
      // May publish commands but not read them: what a lamp user with a missing `read` line looks like.
      deaf: ["topic write lamp/deaf/set_config"],
      writer: ["topic readwrite #"],
      // Sees every lamp, may command none.
      observer: ["topic read state/#", "topic read lamp/+/changed", "topic readwrite lamp/+/changed/doctor"],
    }),
  );
  locked = track(
    await startBroker({ config: ["allow_anonymous false", `password_file ${passwd}`, `acl_file ${acl}`] }),
  );
});

const check = async (env: Record<string, string>) => {
  const run = perTest(
    spawnAgent({ LAMP_ID: ID, GPIO_DRIVER: "mock", STATE_FILE: path.join(dir, "state.json"), ...env }, [
      "--check",
    ]),
  );
  return { code: await run.exited, output: run.output() };
};

suite("lamp-agent --check: the broker", () => {
  it("an open broker: connected, and a round trip on the lamp's command topic", async () => {
    const { code, output } = await check({ MQTT_URL: open.url });
    expect(output).toContain(`broker: connected to ${open.url} (MQTT 5)`);
    expect(output).toContain(`broker: round trip on lamp/${ID}/set_config: ok`);
    expect(output).toContain("ok: the agent can run with this configuration");
    expect(code).toBe(0);
  });

  it("nothing listening: one line saying so, exit 1", async () => {
    const port = await freePort();
    const { code, output } = await check({ MQTT_URL: `mqtt://127.0.0.1:${port}` });
    expect(output).toContain(`problem: broker: nothing accepts connections at 127.0.0.1:${port}`);
    expect(output).not.toContain("ok: the agent can run");
    expect(code).toBe(1);
  });

  it("a refused login: the reason and what to check, exit 1", async () => {
    const { code, output } = await check({ MQTT_URL: locked.url, MQTT_USERNAME: ID, MQTT_PASSWORD: "wrong" });
    expect(output).toMatch(
      /problem: broker: the broker refused the login: .*; check MQTT_USERNAME and MQTT_PASSWORD/,
    );
    expect(output).not.toContain("wrong");
    expect(code).toBe(1);
  });

  it("the lamp's own ACL (it may only read commands): connected and subscribed, exit 0", async () => {
    const { code, output } = await check({
      MQTT_URL: locked.url,
      MQTT_USERNAME: ID,
      MQTT_PASSWORD: "lamp-secret",
    });
    expect(output).toContain(`broker: subscribed to lamp/${ID}/set_config; this user may not publish there`);
    expect(code).toBe(0);
  });

  it("a user that cannot read its command topic, which Mosquitto grants silently: exit 1", async () => {
    const { code, output } = await check({
      LAMP_ID: "deaf",
      MQTT_URL: locked.url,
      MQTT_USERNAME: "deaf",
      MQTT_PASSWORD: "deaf-secret",
    });
    expect(output).toContain(
      "problem: broker: the broker took a command on lamp/deaf/set_config but never delivered it: this " +
        "user cannot read that topic (check the ACL: topic read), so the lamp would never hear a command",
    );
    expect(code).toBe(1);
  });

  it("--test with credentials that may not send commands: says so and what to use, exit 1", async () => {
    const agent = perTest(
      spawnMockAgent(locked.url, { MQTT_USERNAME: ID, MQTT_PASSWORD: "lamp-secret" }, { id: ID }),
    );
    const creds = { MQTT_USERNAME: "observer", MQTT_PASSWORD: "o" };
    const watcher = perTest(
      await Recorder.connect(locked.url, [`state/${ID}`], { username: "writer", password: "w" }),
    );
    await watcher.wait(`state/${ID}`, (t) => t === "1", 15_000);
    const test = perTest(
      spawnAgent(
        {
          LAMP_ID: ID,
          GPIO_DRIVER: "mock",
          STATE_FILE: path.join(dir, "t.json"),
          MQTT_URL: locked.url,
          ...creds,
        },
        ["--test"],
      ),
    );
    expect(await test.exited).toBe(1);
    expect(test.output()).toContain(
      `red (pin 19): the broker refused the command on lamp/${ID}/set_config (Publish error: Not authorized`,
    );
    expect(test.output()).toContain("run the test with credentials that may publish there");
    expect(agent.child.exitCode).toBeNull();
  });
});

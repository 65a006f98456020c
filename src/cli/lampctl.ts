#!/usr/bin/env node
import { randomBytes } from "node:crypto";
import mqtt, { type MqttClient } from "mqtt";
import { ConfigError, loadConfig } from "../config.js";
import { applyCommand, type Command, CommandError, parseCommand } from "../lamp/command.js";
import { sameState } from "../lamp/state.js";
import { parseCommandLine, UsageError } from "./args.js";

const CLIENT = "lampctl";
const HELP = `lampctl: set and show a lamp-agent lamp over MQTT

Usage:
  lampctl [--on|--off] [--hue H] [--saturation S] [--brightness B] [--transition T]
  lampctl            print the lamp's state
  lampctl watch      follow the lamp's state, presence and errors (Ctrl-C to stop)

Options:
  --id ID            the lamp (default: LAMP_ID from the environment or .env)
  --url URL          the broker (default: MQTT_URL, else mqtt://localhost:1883)
  --timeout SECONDS  how long to wait for the lamp (default 5)
H, S and B are numbers from 0 to 1; T is seconds. Sends client "lampctl".
Exit codes: 0 ok, 1 no answer or the lamp refused, 2 bad usage.`;

function fail(message: string, code: number): never {
  process.stderr.write(`lampctl: ${message}\n`);
  process.exit(code);
}

function parse() {
  try {
    return parseCommandLine({
      allowPositionals: true,
      options: {
        on: { type: "boolean" },
        off: { type: "boolean" },
        hue: { type: "string" },
        saturation: { type: "string" },
        brightness: { type: "string" },
        transition: { type: "string" },
        id: { type: "string" },
        url: { type: "string" },
        timeout: { type: "string", default: "5" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    if (error instanceof UsageError) fail(`${error.message} (lampctl --help lists the options)`, 2);
    throw error;
  }
}

/** Builds the command and validates it with the agent's own parser, so mistakes are caught here. */
function buildCommand(values: ReturnType<typeof parse>["values"]): Command | undefined {
  if (values.on && values.off) fail("--on and --off together: choose one", 2);
  const raw: Record<string, unknown> = {};
  if (values.on) raw.on = true;
  if (values.off) raw.on = false;
  const num = (name: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value))
      fail(`--${name} ${JSON.stringify(text)}: not a number`, 2);
    return value;
  };
  const h = num("hue", values.hue);
  const s = num("saturation", values.saturation);
  if (h !== undefined || s !== undefined)
    raw.color = { ...(h !== undefined && { h }), ...(s !== undefined && { s }) };
  const brightness = num("brightness", values.brightness);
  if (brightness !== undefined) raw.brightness = brightness;
  const transition = num("transition", values.transition);
  if (transition !== undefined) raw.transition = transition;
  if (Object.keys(raw).length === 0) return undefined;
  try {
    return parseCommand(Buffer.from(JSON.stringify({ ...raw, client: CLIENT })));
  } catch (error) {
    if (error instanceof CommandError) fail(error.message, 2);
    throw error;
  }
}

interface Shown {
  on: boolean;
  color: { h: number; s: number };
  brightness: number;
  client?: string | null;
}

/** The agent's own rule: a command is a no-op when applying it leaves the state as it is. */
function wouldChange(state: Shown, command: Command): boolean {
  return !sameState(applyCommand(state, command), state);
}

async function main(): Promise<void> {
  const { values, positionals } = parse();
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const watch = positionals[0] === "watch";
  if (positionals.length > (watch ? 1 : 0))
    fail(`unexpected argument ${JSON.stringify(positionals.at(-1))}`, 2);
  const command = buildCommand(values);
  if (watch && command) fail("watch takes no --on/--off/--hue/... options", 2);
  const timeoutMs = Number(values.timeout) * 1000;
  if (!(timeoutMs > 0)) fail(`--timeout ${values.timeout}: not a positive number`, 2);

  const env = { ...process.env };
  if (values.id) env.LAMP_ID = values.id;
  if (values.url) env.MQTT_URL = values.url;
  let topics: { command: string; state: string; error: string; presence: string };
  let mqttConfig: ReturnType<typeof loadConfig>["config"]["mqtt"];
  try {
    // Only what lampctl needs: an agent-only setting that is wrong here should not stop it.
    ({ topics, mqtt: mqttConfig } = loadConfig({ env: { ...env, GPIO_DRIVER: "mock" } }).config);
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 2);
    throw error;
  }

  const client: MqttClient = mqtt.connect(mqttConfig.url, {
    clientId: `lampctl-${randomBytes(4).toString("hex")}`,
    username: mqttConfig.username,
    password: mqttConfig.password,
    reconnectPeriod: watch ? 1000 : 0,
    connectTimeout: timeoutMs,
  });
  let done = false;
  client.on("error", (error) => {
    if (done) return;
    if (!watch) fail(`cannot reach the broker at ${mqttConfig.url}: ${error.message}`, 1);
    process.stderr.write(`lampctl: ${error.message}\n`);
  });

  let state: Shown | undefined;
  let presence = "unknown";
  let sent = false;
  const finish = (code: number, text: string) => {
    if (done) return;
    done = true;
    (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
    client.end(false, () => process.exit(code));
  };
  const send = () => {
    if (!command || sent) return;
    if (state && !wouldChange(state, command)) {
      finish(0, JSON.stringify(state));
      return;
    }
    sent = true;
    client.publish(topics.command, JSON.stringify(command), { qos: 1 });
  };

  client.on("message", (topic, payload) => {
    const text = payload.toString();
    if (watch) {
      process.stdout.write(`${new Date().toISOString()} ${topic} ${text}\n`);
      return;
    }
    if (topic === topics.presence) presence = text;
    else if (topic === topics.state) {
      try {
        state = JSON.parse(text) as Shown;
      } catch {
        return;
      }
      if (!command) finish(0, text);
      else if (sent && state.client === CLIENT) finish(0, text);
    } else if (topic === topics.error && sent) {
      const error = JSON.parse(text) as { error: string; message: string; client: string | null };
      if (error.client === CLIENT)
        finish(1, `the lamp refused the command: ${error.error}: ${error.message}`);
    }
  });

  client.on("connect", () => {
    client.subscribe([topics.state, topics.presence, topics.error], { qos: 1 }, (error) => {
      if (error) fail(`cannot subscribe: ${error.message}`, 1);
      if (watch) return;
      // Retained state arrives right after the subscription; give it a moment before sending blind.
      setTimeout(send, 300);
      setTimeout(() => {
        const hint = presence === "1" ? "it is online but did not answer" : `its presence is ${presence}`;
        finish(1, `no answer from the lamp on ${topics.state} (${hint}); is the agent running with this id?`);
      }, timeoutMs);
    });
  });
}

await main();

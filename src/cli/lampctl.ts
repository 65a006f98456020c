#!/usr/bin/env node
// First: it must run before any package reads DEBUG (the password in the CONNECT packet).
import "../debug-guard.js";
import { randomBytes } from "node:crypto";
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import { type Config, ConfigError, loadConfig, redactUrl } from "../config.js";
import { applyCommand, type Command, CommandError, parseCommand } from "../lamp/command.js";
import { sameState } from "../lamp/state.js";
import { createLogger } from "../log.js";
import { baseClientOptions, errorContext } from "../mqtt/connection.js";
import { explainConnectionError } from "../mqtt/errors.js";
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
The broker, credentials and TLS files are the agent's: MQTT_URL, MQTT_USERNAME,
MQTT_PASSWORD(_FILE), MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE.
Exit codes: 0 ok; 1 no answer, the lamp refused, it is offline (the command is
queued) or the broker refused the login; 2 bad usage.`;

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

/** Only what lampctl needs: an agent-only setting that is wrong here should not stop it. */
function lampConfig(values: ReturnType<typeof parse>["values"]): Config {
  const env: NodeJS.ProcessEnv = { ...process.env, GPIO_DRIVER: "mock" };
  if (values.id) env.LAMP_ID = values.id;
  if (values.url) env.MQTT_URL = values.url;
  try {
    const { config, warnings } = loadConfig({ env });
    // An installed configuration it cannot read, a variable that looks like ours: said, then on.
    for (const warning of warnings) process.stderr.write(`lampctl: warning: ${warning}\n`);
    return config;
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 2);
    throw error;
  }
}

/** The agent's own client options: credentials, TLS files, MQTT.js debug output with secrets scrubbed. */
function connect(config: Config, watch: boolean, timeoutMs: number): MqttClient {
  return mqtt.connect(config.mqtt.url, {
    ...baseClientOptions(config, createLogger({ level: "silent", format: "json" })),
    clientId: `lampctl-${randomBytes(4).toString("hex")}`,
    protocolVersion: config.mqtt.protocol,
    reconnectPeriod: watch ? 1000 : 0,
    connectTimeout: timeoutMs,
  });
}

/**
 * A broker that only speaks 3.1.1 refuses MQTT 5 with "unacceptable protocol version": speak 3.1.1
 * then, as the agent does. True when it switched (and is reconnecting).
 */
function downgraded(client: MqttClient, error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (client.options.protocolVersion !== 5 || (code !== 1 && code !== 132)) return false;
  client.options.protocolVersion = 4;
  delete client.options.properties;
  setImmediate(() => client.reconnect());
  return true;
}

/** A refused CONNECT (bad password, not authorised, banned...) does not fix itself by retrying. */
function refusedForGood(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  // 3.1.1's "server unavailable" and MQTT 5's unavailable, busy and rate limit pass.
  return typeof code === "number" && ![3, 136, 137, 159].includes(code);
}

interface Presence {
  readonly value: string;
  /** When the lamp went offline, if known: the agent stamps its own `0` (MQTT 5), or we saw it live. */
  readonly since?: string | undefined;
}

function presenceOf(text: string, packet: IPublishPacket): Presence {
  const stamp = packet.properties?.userProperties?.since;
  const since = Array.isArray(stamp) ? stamp[0] : stamp;
  return { value: text, since: since ?? (packet.retain ? undefined : new Date().toISOString()) };
}

function offline(topic: string, presence: Presence | undefined): string | undefined {
  if (presence?.value !== "0") return undefined;
  return `the lamp is offline (${topic} is 0${presence.since ? ` since ${presence.since}` : ""})`;
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

  const config = lampConfig(values);
  const { topics } = config;
  const url = redactUrl(config.mqtt.url);
  const client = connect(config, watch, timeoutMs);
  const explain = (error: unknown) =>
    explainConnectionError(error, errorContext(config, client.options.protocolVersion === 4 ? 4 : 5));
  const say = (text: string) => process.stderr.write(`lampctl: ${text}\n`);

  let done = false;
  const finish = (code: number, text: string, note?: string) => {
    if (done) return;
    done = true;
    (code === 0 ? process.stdout : process.stderr).write(`${code === 0 ? "" : "lampctl: "}${text}\n`);
    if (note) say(note);
    client.end(false, () => process.exit(code));
  };

  // Watch: one line per change of condition (an explanation, lost, connected again), not per retry.
  let problem = "";
  let connected = false;
  client.on("error", (error) => {
    if (done || downgraded(client, error)) return;
    const text = explain(error);
    if (!watch || refusedForGood(error)) fail(text, 1);
    if (text !== problem) say(text);
    problem = text;
  });
  client.on("close", () => {
    if (!watch || !connected) return;
    connected = false;
    problem = `lost the connection to ${url}; reconnecting`;
    say(problem);
  });

  let state: Shown | undefined;
  let presence: Presence | undefined;
  let sent = false;
  const send = () => {
    if (!command || sent) return;
    if (state && !wouldChange(state, command)) {
      finish(0, JSON.stringify(state), offline(topics.presence, presence));
      return;
    }
    sent = true;
    client.publish(topics.command, JSON.stringify(command), { qos: 1 }, (error) => {
      if (error) {
        finish(1, `could not send the command: ${error.message}`);
        return;
      }
      const away = offline(topics.presence, presence);
      // The agent's session keeps QoS 1 commands while it is away: say so now, not after the timeout.
      if (away)
        finish(1, `${away}: the command is queued on the broker, and the lamp applies it when it reconnects`);
    });
  };

  client.on("message", (topic, payload, packet) => {
    const text = payload.toString();
    if (watch) {
      const note = topic === topics.presence ? offline(topic, presenceOf(text, packet)) : undefined;
      process.stdout.write(`${new Date().toISOString()} ${topic} ${text}${note ? ` (${note})` : ""}\n`);
      return;
    }
    if (topic === topics.presence) presence = presenceOf(text, packet);
    else if (topic === topics.state) {
      try {
        state = JSON.parse(text) as Shown;
      } catch {
        return;
      }
      if (!command) finish(0, text, offline(topics.presence, presence));
      else if (sent && state.client === CLIENT) finish(0, text);
    } else if (topic === topics.error && sent) {
      const error = JSON.parse(text) as { error: string; message: string; client: string | null };
      if (error.client === CLIENT)
        finish(1, `the lamp refused the command: ${error.error}: ${error.message}`);
    }
  });

  client.on("connect", () => {
    if (watch && problem) say(`connected to ${url}`);
    problem = "";
    connected = true;
    // Presence first: the broker sends retained messages in this order, so the state is shown knowing it.
    client.subscribe([topics.presence, topics.state, topics.error], { qos: 1 }, (error) => {
      if (error) fail(`cannot subscribe: ${error.message}`, 1);
      if (watch) return;
      // Retained state arrives right after the subscription; give it a moment before sending blind.
      setTimeout(send, 300);
      setTimeout(() => {
        const hint =
          presence?.value === "1"
            ? "it is online but did not answer"
            : `its presence is ${presence?.value ?? "unknown"}`;
        finish(1, `no answer from the lamp on ${topics.state} (${hint}); is the agent running with this id?`);
      }, timeoutMs);
    });
  });
}

await main();

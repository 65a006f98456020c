#!/usr/bin/env node
// First: it must run before any package reads DEBUG (the password in the CONNECT packet).
import "../debug-guard.js";
import type { IPublishPacket, MqttClient } from "mqtt";
import { type ClientConfig, ConfigError, loadConfig, redactUrl } from "../config.js";
import { applyCommand, type Command, CommandError, parseCommand } from "../lamp/command.js";
import { MAX_TRANSITION_S } from "../lamp/command-scan.js";
import { sameState } from "../lamp/state.js";
import { noNodeLetUsIn } from "../mqtt/errors.js";
import { parseError, parseState, type StateMessage } from "../protocol/payloads.js";
import { groupCommandTopic, NAME_PATTERN } from "../protocol/topics.js";
import { suggest } from "../suggest.js";
import { VERSION } from "../version.js";
import { parseCommandLine, UsageError } from "./args.js";
import { connectClient, explain, fellBack, nodeTracker, refusedForGood } from "./broker-client.js";
import { FleetView, formatTable, rowCells, toJson } from "./fleet-view.js";

const CLIENT = "lampctl";
const HELP = `lampctl: set and show a lamp-agent lamp over MQTT

Usage:
  lampctl [--on|--off] [--hue H] [--saturation S] [--brightness B] [--transition T] [--identify]
  lampctl            print the lamp's state
  lampctl watch      follow the lamp's state, presence and errors (Ctrl-C to stop)
  lampctl info       print the lamp's retained info and its presence, as JSON
  lampctl ls [--json] [--watch]  list every lamp on the broker: id, name, online, offline
                     or silent, state; --watch keeps the list live (Ctrl-C to stop)
  lampctl --group G [--on|--off|...]  command every lamp in group G (LAMP_GROUPS; "all" is every
                     lamp), and say how many answered

Options:
  --id ID            the lamp (default: LAMP_ID from the environment or .env)
  --identify         blink the lamp for about 5 s, to find it
  --url URL          the broker (default: MQTT_URL, else mqtt://localhost:1883)
  --timeout SECONDS  how long to wait for the lamp (default 5); for ls, how long to
                     listen for telemetry: a lamp whose presence says 1 but that sent
                     none for three of its TELEMETRY_INTERVALs is shown silent, judged
                     only where three intervals fit in the timeout
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
        group: { type: "string" },
        identify: { type: "boolean" },
        json: { type: "boolean" },
        watch: { type: "boolean" },
        url: { type: "string" },
        timeout: { type: "string", default: "5" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "v" },
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
  // Checked here, by the option's own name: the agent's parser would speak of `color.h`.
  const num = (name: string, text: string | undefined, max = 1, unit = "") => {
    if (text === undefined) return undefined;
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value) || value < 0 || value > max)
      fail(`--${name} ${text}: allowed: a number from 0 to ${max}${unit}`, 2);
    return value;
  };
  const h = num("hue", values.hue);
  const s = num("saturation", values.saturation);
  if (h !== undefined || s !== undefined)
    raw.color = { ...(h !== undefined && { h }), ...(s !== undefined && { s }) };
  const brightness = num("brightness", values.brightness);
  if (brightness !== undefined) raw.brightness = brightness;
  const transition = num("transition", values.transition, MAX_TRANSITION_S, " (seconds)");
  if (transition !== undefined) raw.transition = transition;
  if (values.identify) raw.identify = true;
  if (Object.keys(raw).length === 0) return undefined;
  try {
    return parseCommand(Buffer.from(JSON.stringify({ ...raw, client: CLIENT })));
  } catch (error) {
    if (error instanceof CommandError) fail(error.message, 2);
    throw error;
  }
}

/** The agent's own rule: a command is a no-op when applying it leaves the state as it is (identify aside). */
function wouldChange(state: StateMessage, command: Command): boolean {
  return command.identify === true || !sameState(applyCommand(state, command), state);
}

/** Only what lampctl needs (the id, the broker, the topics): an agent-only setting cannot stop it. */
function lampConfig(values: ReturnType<typeof parse>["values"]): {
  config: ClientConfig;
  defaultId: boolean;
} {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (values.id) env.LAMP_ID = values.id;
  if (values.url) env.MQTT_URL = values.url;
  try {
    const { config, warnings, effective } = loadConfig({ env, scope: "client" });
    // An installed configuration it cannot read, a variable that looks like ours: said, then on.
    for (const warning of warnings) process.stderr.write(`lampctl: warning: ${warning}\n`);
    const defaultId = effective.some((s) => s.name === "LAMP_ID" && s.source === "default");
    return { config, defaultId };
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 2);
    throw error;
  }
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

const MODES = ["watch", "ls", "info"] as const;

async function main(): Promise<void> {
  const { values, positionals } = parse();
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (values.id !== undefined && !NAME_PATTERN.test(values.id))
    fail(
      `--id ${JSON.stringify(values.id)}: allowed: 1 to 64 of A-Z a-z 0-9 _ - (a lamp id, as in lamp/<id>/...)`,
      2,
    );
  const mode = MODES.find((m) => m === positionals[0]);
  if (positionals.length > (mode ? 1 : 0)) {
    const word = positionals.at(-1) ?? "";
    const hint = suggest(word, [...MODES]);
    fail(`unexpected argument ${JSON.stringify(word)}${hint ? `; did you mean ${hint}?` : ""}`, 2);
  }
  const command = buildCommand(values);
  if (mode && command) fail(`${mode} takes no --on/--off/--hue/... options`, 2);
  if (values.json && mode !== "ls") fail("--json goes with ls", 2);
  if (values.watch && mode !== "ls") fail("--watch goes with ls (lampctl watch follows one lamp)", 2);
  if (values.group !== undefined) {
    if (mode) fail(`--group commands a group; it does not go with ${mode}`, 2);
    if (!command) fail("--group needs a command: --on, --off, --hue, --brightness...", 2);
    if (!NAME_PATTERN.test(values.group))
      fail(`--group ${JSON.stringify(values.group)}: allowed: 1 to 64 of A-Z a-z 0-9 _ -`, 2);
  }
  const timeoutMs = Number(values.timeout) * 1000;
  if (!(timeoutMs > 0)) fail(`--timeout ${values.timeout}: not a positive number`, 2);

  const { config, defaultId } = lampConfig(values);
  const watch = mode === "watch" || values.watch === true;
  const client = connectClient(config.mqtt, watch, timeoutMs);
  const session = new Session(config, client, watch, defaultId);
  if (mode === "info") showInfo(session, timeoutMs);
  else if (mode === "ls" && watch) watchLamps(session, values.json === true);
  else if (mode === "ls") listLamps(session, values.json === true, timeoutMs);
  else if (values.group !== undefined && command) commandGroup(session, values.group, command, timeoutMs);
  else driveLamp(session, mode === "watch", command, timeoutMs);
}

/** One connection and how lampctl talks about it: every mode finishes through `finish`. */
class Session {
  private done = false;
  /** Watch: one line per change of condition (an explanation, lost, connected again), not per retry. */
  private problem = "";
  private connected = false;
  /** The node of MQTT_URL the client is on, or trying. */
  private readonly node: () => string;

  constructor(
    readonly config: ClientConfig,
    readonly client: MqttClient,
    private readonly watch: boolean,
    /** LAMP_ID was not given: the id is this machine's own default, rarely the lamp meant. */
    readonly defaultId: boolean,
  ) {
    this.node = nodeTracker(client, config.mqtt);
    const nodes = config.mqtt.urls.length;
    // A one-shot command gives up once every node has failed in a row (one broker: at its first
    // failure); a connection that held and dropped is carried on by MQTT.js's reconnect.
    let failed = 0;
    let reason = "";
    let fallingBack = false;
    client.on("error", (error) => {
      if (this.done) return;
      if (fellBack(client, error)) {
        fallingBack = true;
        return;
      }
      const text = explain(config.mqtt, client, error, this.node());
      if (refusedForGood(error)) fail(text, 1);
      if (!watch) {
        reason = text;
        return;
      }
      if (text !== this.problem) this.say(text);
      this.problem = text;
    });
    client.on("close", () => {
      if (this.done) return;
      // That node answered, in 3.1.1: not a failure. MQTT.js's reconnect takes the next node, and the
      // count starts again, so the node that answered is tried again within the round.
      if (fallingBack) {
        fallingBack = false;
        failed = 0;
        return;
      }
      const wasConnected = this.connected;
      this.connected = false;
      if (!watch) {
        failed = wasConnected ? 0 : failed + 1;
        if (failed < nodes) return;
        const why =
          reason ||
          `${redactUrl(this.node())} closed the connection without accepting it, or did not answer: check MQTT_USERNAME and MQTT_PASSWORD and the broker's log`;
        fail(nodes > 1 ? noNodeLetUsIn(nodes, why) : why, 1);
      }
      if (!wasConnected) return;
      this.problem = `lost the connection to ${redactUrl(this.node())}; reconnecting`;
      this.say(this.problem);
    });
    client.on("connect", () => {
      if (watch && this.problem) this.say(`connected to ${redactUrl(this.node())}`);
      this.problem = "";
      this.connected = true;
      reason = "";
    });
  }

  /** The node the client is on, its password masked. */
  get url(): string {
    return redactUrl(this.node());
  }

  say(text: string): void {
    process.stderr.write(`lampctl: ${text}\n`);
  }

  finish(code: number, text: string, note?: string): void {
    if (this.done) return;
    this.done = true;
    (code === 0 ? process.stdout : process.stderr).write(`${code === 0 ? "" : "lampctl: "}${text}\n`);
    if (note) this.say(note);
    this.client.end(false, () => process.exit(code));
  }

  /**
   * Subscribes on every connect (both modes reconnect); `then` runs after the SUBACK: after each in
   * watch mode, after the first only for a one-shot command (which must not send twice). At QoS 0: a
   * clean session keeps nothing for lampctl anyway, and QoS 1 would cost it, on NATS, a JetStream
   * consumer per filter, which a cluster with a node down refuses (4 s each), just when the fleet needs
   * looking at; on a broker with Nagle on, it would also wait for the delayed ACK of each PUBACK.
   */
  subscribe(filters: readonly string[], then: () => void): void {
    let ran = false;
    this.client.on("connect", () => {
      this.client.subscribe([...filters], { qos: 0 }, (error) => {
        if (error) fail(`cannot subscribe: ${error.message}`, 1);
        if (ran && !this.watch) return;
        ran = true;
        then();
      });
    });
  }

  /** Resolves once no message arrived for `quietMs` (the retained ones come right after the SUBACK). */
  quiet(quietMs: number, maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      const end = setTimeout(finish, maxMs);
      let timer = setTimeout(finish, quietMs);
      const onMessage = () => {
        clearTimeout(timer);
        timer = setTimeout(finish, quietMs);
      };
      function finish() {
        clearTimeout(end);
        clearTimeout(timer);
        resolve();
      }
      this.client.on("message", onMessage);
    });
  }
}

/** How long the retained messages of a fresh subscription may keep arriving before the list is whole. */
const SETTLE_MS = 500;

/**
 * `lampctl ls`: every lamp the broker holds retained messages of. It listens on for the lamps it can
 * judge silent within the timeout (three telemetry intervals fit in it) until each has sent telemetry
 * or is overdue; the others it shows as their presence says.
 */
function listLamps(session: Session, json: boolean, timeoutMs: number): void {
  const started = Date.now();
  const view = new FleetView(started);
  session.client.on("message", (topic, payload, packet) => view.take(topic, payload, packet));
  session.subscribe(FleetView.filters, () => {
    void session.quiet(SETTLE_MS, timeoutMs).then(() => {
      const print = () => {
        const rows = view.rows(Date.now(), timeoutMs);
        if (json) session.finish(0, toJson(rows));
        else if (rows.length === 0)
          session.finish(0, "no lamps on this broker (none has published its presence or state)");
        else session.finish(0, formatTable(rows));
      };
      const check = setInterval(() => {
        const now = Date.now();
        if (!view.undecided(now, timeoutMs) || now - started >= timeoutMs) {
          clearInterval(check);
          print();
        }
      }, 100);
    });
  });
}

/** How often `lampctl ls --watch` judges the lamps again when nothing arrives. */
const WATCH_TICK_MS = 1000;

/**
 * `lampctl ls --watch`: the fleet view kept live, the silent rule applying to every lamp that sends
 * telemetry. On a terminal the table is redrawn when it changes; otherwise (a pipe, a log) one line per
 * lamp whose row changed, stamped with the time, or one JSON object per line with --json.
 */
function watchLamps(session: Session, json: boolean): void {
  const view = new FleetView();
  const tty = process.stdout.isTTY === true;
  const shown = new Map<string, string>();
  let table = "";
  const render = () => {
    const rows = view.rows();
    if (tty) {
      const next = rows.length > 0 ? formatTable(rows) : "no lamps on this broker yet";
      if (next === table) return;
      table = next;
      process.stdout.write(`\x1b[H\x1b[2J${table}\n\nlampctl: watching ${session.url}; Ctrl-C to stop\n`);
      return;
    }
    const stamp = new Date().toISOString();
    const seen = new Set<string>();
    for (const row of rows) {
      seen.add(row.id);
      const line = json ? JSON.stringify(row) : rowCells(row).join("  ");
      if (shown.get(row.id) === line) continue;
      shown.set(row.id, line);
      process.stdout.write(json ? `${line}\n` : `${stamp}  ${line}\n`);
    }
    for (const id of [...shown.keys()].filter((id) => !seen.has(id))) {
      shown.delete(id);
      process.stdout.write(
        json ? `${JSON.stringify({ id, removed: true })}\n` : `${stamp}  ${id}  removed\n`,
      );
    }
  };
  let settled = false;
  session.client.on("message", (topic, payload, packet) => {
    if (view.take(topic, payload, packet) && settled) render();
  });
  session.subscribe(FleetView.filters, () => {
    // The retained messages first, so the first drawing is the whole fleet rather than its first lamp.
    void session.quiet(SETTLE_MS, 5000).then(() => {
      if (settled) return;
      settled = true;
      render();
      setInterval(render, WATCH_TICK_MS);
    });
  });
}

/**
 * `lampctl info`: what the lamp says it is (its retained `info`) and its presence, one JSON object, for
 * people and for `install.sh --host`, which waits for a new version to be online with it. Exit 1 when
 * the broker holds no info for the lamp.
 */
function showInfo(session: Session, timeoutMs: number): void {
  const { client, config } = session;
  let presence: string | null = null;
  let info: unknown = null;
  client.on("message", (topic, payload) => {
    const text = payload.toString();
    if (topic === config.topics.presence) presence = text === "" ? null : text;
    else if (topic === config.topics.info) {
      try {
        info = text === "" ? null : (JSON.parse(text) as unknown);
      } catch {
        info = null;
      }
    }
  });
  session.subscribe([config.topics.presence, config.topics.info], () => {
    void session.quiet(SETTLE_MS, timeoutMs).then(() => {
      if (info === null)
        session.finish(
          1,
          `no info from lamp ${config.lampId} on ${config.topics.info} (presence: ${presence ?? "none"})`,
        );
      else session.finish(0, JSON.stringify({ id: config.lampId, presence, info }));
    });
  });
}

/**
 * `lampctl --group G --on`: the command goes to the group's topic; each lamp in it answers on its own
 * `changed` with client "lampctl", or stays silent when it already was as asked (a no-op). Lamps are
 * known from their retained `info` (which names their groups) and presence.
 */
function commandGroup(session: Session, group: string, command: Command, timeoutMs: number): void {
  const { client, config } = session;
  const view = new FleetView();
  const answered = new Set<string>();
  let sent = false;
  /** Each member's state once the command is applied, when its state before was known. */
  const targets = new Map<string, StateMessage>();
  client.on("message", (topic, payload, packet) => {
    view.take(topic, payload, packet);
    if (!sent || !topic.endsWith("/changed")) return;
    const id = topic.split("/")[1];
    const state = parseState(payload.toString());
    if (id && state && answers(state, packet, targets.get(id))) answered.add(id);
  });
  session.subscribe(FleetView.filters, () => {
    void session.quiet(SETTLE_MS, timeoutMs).then(() => {
      const members = view.members(group).filter((row) => row.presence === "online");
      // Already as asked: nothing will be published, and that is an answer too.
      const already = members.filter(
        (row) => row.state && !wouldChange({ ...row.state, client: null }, command),
      );
      const expected = new Set(members.map((row) => row.id));
      for (const row of members)
        if (row.state) targets.set(row.id, { ...applyCommand(row.state, command), client: CLIENT });
      const topic = groupCommandTopic(config.groupTopicBase, group);
      sent = true;
      client.publish(topic, JSON.stringify(command), { qos: 1 }, (error) => {
        if (error) session.finish(1, `could not send the command: ${error.message}`);
      });
      const report = () => {
        const count = answered.size + already.filter((row) => !answered.has(row.id)).length;
        const missing = [...expected].filter(
          (id) => !answered.has(id) && !already.some((row) => row.id === id),
        );
        const text = `group ${group}: ${count} of ${expected.size} online lamp${expected.size === 1 ? "" : "s"} answered${
          already.length > 0 ? ` (${already.length} already as asked)` : ""
        }`;
        if (missing.length === 0) session.finish(0, text);
        else session.finish(1, `${text}; no answer from ${missing.join(", ")}`);
      };
      const check = setInterval(() => {
        if ([...expected].every((id) => answered.has(id) || already.some((row) => row.id === id))) {
          clearInterval(check);
          // Lamps outside the list (no info yet) may still answer: a moment for them.
          setTimeout(report, 200);
        }
      }, 50);
      setTimeout(() => {
        clearInterval(check);
        report();
      }, timeoutMs);
    });
  });
}

/**
 * Whether a state on `changed` answers our command: live and in lampctl's name, or, replayed from the
 * broker's store, the very state the command leads to. A replay in lampctl's name alone could be an
 * older lampctl's; and after a reconnect MQTT.js sends the unacknowledged command again before lampctl
 * has subscribed again, so the live answer may be missed and the replay is all there is.
 */
function answers(state: StateMessage, packet: IPublishPacket, expected: StateMessage | undefined): boolean {
  if (state.client !== CLIENT) return false;
  return !packet.retain || (expected !== undefined && sameState(state, expected));
}

/** One lamp: print its state, command it, or watch it. */
function driveLamp(session: Session, watch: boolean, command: Command | undefined, timeoutMs: number): void {
  const { client, config } = session;
  const { topics } = config;
  let state: StateMessage | undefined;
  let presence: Presence | undefined;
  let sent = false;
  /** The state the command leads to, when the state before it was known. */
  let expected: StateMessage | undefined;
  const send = () => {
    if (!command || sent) return;
    if (state && !wouldChange(state, command)) {
      session.finish(0, JSON.stringify(state), offline(topics.presence, presence));
      return;
    }
    sent = true;
    if (state) expected = { ...applyCommand(state, command), client: CLIENT };
    client.publish(topics.command, JSON.stringify(command), { qos: 1 }, (error) => {
      if (error) {
        session.finish(1, `could not send the command: ${error.message}`);
        return;
      }
      const away = offline(topics.presence, presence);
      // The agent's session keeps QoS 1 commands while it is away: say so now, not after the timeout.
      if (away)
        session.finish(
          1,
          `${away}: the command is queued on the broker, and the lamp applies it when it reconnects`,
        );
      // Identify alone changes no state, so no state answers it: sent is all we can know.
      else if (isIdentifyOnly(command)) session.finish(0, `asked ${config.lampId} to blink for about 5 s`);
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
      state = parseState(text);
      if (!state) return;
      if (!command) session.finish(0, text, offline(topics.presence, presence));
      else if (sent && answers(state, packet, expected)) session.finish(0, text);
    } else if (topic === topics.error && sent) {
      const error = parseError(text);
      if (error?.client === CLIENT)
        session.finish(1, `the lamp refused the command: ${error.error}: ${error.message}`);
    }
  });

  // Presence first: the broker sends retained messages in this order, so the state is shown knowing it.
  session.subscribe([topics.presence, topics.state, topics.error], () => {
    if (watch) return;
    // Retained state arrives right after the subscription; give it a moment before sending blind.
    setTimeout(send, 300);
    setTimeout(() => {
      const hint =
        presence?.value === "1"
          ? "it is online but did not answer"
          : `its presence is ${presence?.value ?? "unknown"}`;
      session.finish(
        1,
        `no answer from the lamp on ${topics.state} (${hint}); is the agent running with this id?${
          session.defaultId
            ? ` No id was given, so ${config.lampId} is this machine's own default (its MAC address): name the lamp with --id ID or LAMP_ID (lampctl ls lists them)`
            : ""
        }`,
      );
    }, timeoutMs);
  });
}

function isIdentifyOnly(command: Command): boolean {
  return Object.keys(command).every((key) => key === "identify" || key === "client");
}

// Not a top-level await: the bundle is CommonJS (scripts/build.mjs).
void main();

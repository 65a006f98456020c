import { readFileSync } from "node:fs";
import path from "node:path";
import { distance } from "fastest-levenshtein";
import * as z from "zod/mini";
import { type ConfigFile, findConfigFiles, readable } from "./config-files.js";
import { DRIVER_NAMES, type DriverName } from "./drivers/driver.js";
import { MAX_TRANSITION_S } from "./lamp/command-scan.js";
import { defaultLampId } from "./lamp-id.js";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.js";
import {
  commandTopic,
  DEFAULT_GROUP_TOPIC_BASE,
  DEFAULT_GROUPS,
  defaultPresenceTopic,
  defaultTopicBase,
  errorTopic,
  infoTopic,
  NAME_PATTERN,
  stateTopic,
  telemetryTopic,
} from "./protocol/topics.js";
import { suggest } from "./suggest.js";
import { secretFileWarnings, tlsFileProblems } from "./tls-files.js";

export const POWER_ON_MODES = ["restore", "on", "off"] as const;
export type PowerOn = (typeof POWER_ON_MODES)[number];

export interface Config {
  readonly lampId: string;
  /** LAMP_NAME: what people call the lamp (Home Assistant's device name, `lampctl ls`, `info`). */
  readonly name: string;
  /** LAMP_GROUPS: the groups whose commands this lamp obeys too. */
  readonly groups: readonly string[];
  readonly groupTopicBase: string;
  /** Seconds between telemetry messages; 0 = none. */
  readonly telemetryInterval: number;
  readonly mqtt: {
    /** The first node of `urls`: where lampctl and the one-shot clients start. */
    readonly url: string;
    /** MQTT_URL's nodes: one broker, or the nodes of one cluster. */
    readonly urls: readonly string[];
    readonly clientId: string;
    readonly keepalive: number;
    /** Reconnect backoff: first delay, doubling (with jitter) up to the maximum. */
    readonly reconnect: { readonly initialMs: number; readonly maxMs: number };
    /** How long to wait before each try once another client took our session over (two Pis, one id). */
    readonly takeoverRetryMs: number;
    /** 5 (falls back to 3.1.1 when the broker refuses it) or 4 (3.1.1 only). */
    readonly protocol: 4 | 5;
    readonly username?: string | undefined;
    readonly password?: string | undefined;
    /** Where the password came from, when from a file (checked for permissions, never logged). */
    readonly passwordFile?: string | undefined;
    readonly caFile?: string | undefined;
    readonly certFile?: string | undefined;
    readonly keyFile?: string | undefined;
  };
  readonly topics: {
    readonly command: string;
    readonly state: string;
    readonly error: string;
    readonly presence: string;
    readonly info: string;
    readonly telemetry: string;
  };
  readonly driver: DriverName | "auto";
  readonly pins: readonly number[];
  readonly activeLow: boolean;
  readonly frequency: number;
  readonly gamma: number;
  /** Seconds, for commands without `transition`. */
  readonly defaultTransition: number;
  readonly stateFile: string;
  readonly powerOn: PowerOn;
  readonly ha: { readonly enabled: boolean; readonly prefix: string };
  readonly mockTrace?: string | undefined;
  readonly sysfsRoot: string;
  readonly log: { readonly level: LogLevel; readonly format: LogFormat };
}

/** Every configuration problem at once, one line each, naming the variable, the value and what is allowed. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export interface EffectiveSetting {
  readonly name: string;
  readonly value: string;
  /** `environment`, `default`, the file it came from (`.env` or a path), or `installed password file`. */
  readonly source: string;
}

export interface LoadedConfig {
  readonly config: Config;
  /** Every variable, as used, secrets masked: what `--check` prints. */
  readonly effective: readonly EffectiveSetting[];
  /** Not errors, but worth saying at start and in `--check`: secret files others can read, unknown variables. */
  readonly warnings: readonly string[];
  /** The file that filled in what the environment did not set (`.env` or a path), if any. */
  readonly file?: string | undefined;
}

/** A URL as it may be shown: a password in it (mqtt://user:pass@host) is masked. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (!url.password) return value;
    url.password = "********";
    return url.toString();
  } catch {
    return value.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:********@");
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** What a default or a rule may depend on besides the variable's own text. */
interface Context {
  readonly env: Env;
  readonly cwd: string;
  /** LAMP_ID as read (its default when unset or invalid). */
  readonly lampId: string;
  readonly topicBase: string;
  /** SYSFS_ROOT as read: where the default LAMP_ID looks for the network devices. */
  readonly sysfsRoot: string;
}

type Rule<T> = z.ZodMiniType<T>;
/** A rule is built when a variable is given: most are unset, and building all of them cost every start
 * more than the parsing did (zod builds each schema object by object). */
type Lazy<T> = (context: Context) => Rule<T>;

/** A rule that does not depend on the context, built once on first use. */
function once<T>(build: () => Rule<T>): Lazy<T> {
  let rule: Rule<T> | undefined;
  return () => {
    rule ??= build();
    return rule;
  };
}
type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly allowed: string };

/** One row of the table: how the text becomes a value, and the value when the variable is unset. */
interface Variable<T> {
  readonly parse: (text: string, context: Context) => Parsed<T>;
  readonly fallback: (context: Context) => T;
  /** Never shown, not even in `--check`. */
  readonly secret: boolean;
}

function parser<T>(rule: Lazy<T>) {
  return (text: string, context: Context): Parsed<T> => {
    const result = rule(context).safeParse(text);
    if (result.success) return { ok: true, value: result.data };
    return { ok: false, allowed: result.error.issues[0]?.message ?? "invalid" };
  };
}

/** A variable with a default: its value is always a T. */
function setting<T>(rule: Lazy<T>, fallback: (context: Context) => T): Variable<T> {
  return { parse: parser(rule), fallback, secret: false };
}

/** A variable without a default: unset means none. */
function optional<T>(rule: Lazy<T>, options: { secret?: boolean } = {}): Variable<T | undefined> {
  return { parse: parser(rule), fallback: () => undefined, secret: options.secret ?? false };
}

const TOPIC = /^[^+#]{1,256}$/;
// Plain decimals only: Number() would also take "0x10", "1e3" and " " (as 0).
const DECIMAL = /^\s*-?\d+(\.\d+)?\s*$/;
const TRUTHY = new Set(["true", "1", "yes", "on"]);
const FALSY = new Set(["false", "0", "no", "off"]);

const text = once(() => z.string());
const nonEmpty = once(() => z.string().check(z.minLength(1)));
const normal = (v: string) => v.trim().toLowerCase();
const boolean = once(() =>
  z.pipe(
    z
      .string()
      .check(z.refine((v) => TRUTHY.has(normal(v)) || FALSY.has(normal(v)), "allowed: true or false")),
    z.transform((v: string) => TRUTHY.has(normal(v))),
  ),
);
function number(min: number, max: number, unit = "", whole = false): Lazy<number> {
  const allowed = `allowed: ${whole ? "a whole number" : "a number"} from ${min} to ${max}${unit}`;
  return once(() => {
    const range = [z.minimum(min, allowed), z.maximum(max, allowed)];
    return z.pipe(
      z.pipe(z.string().check(z.regex(DECIMAL, allowed)), z.transform(Number)),
      whole ? z.int(allowed).check(...range) : z.number().check(...range),
    );
  });
}
const integer = (min: number, max: number, unit = "") => number(min, max, unit, true);
/** One of a list of names, the default among them. */
function choice<const T extends readonly [string, ...string[]]>(
  values: T,
  fallback: T[number],
): Variable<T[number]> {
  const variable = setting(
    once(() => z.enum(values, { error: `allowed: ${values.join(", ")}` })),
    () => fallback,
  );
  return {
    ...variable,
    // "pigpo": name the value meant, as for a misspelt variable or option. Not for one character, which
    // is a character away from every other ("4", MQTT 3.1.1's protocol level, is not a misspelt "5").
    parse: (text, context) => {
      const parsed = variable.parse(text, context);
      const typed = text.trim().toLowerCase();
      const guess = parsed.ok || typed.length < 2 ? undefined : suggest(typed, values);
      return parsed.ok || !guess
        ? parsed
        : { ok: false, allowed: `${parsed.allowed}; did you mean ${guess}?` };
    },
  };
}
const topic = once(() =>
  z.string().check(
    z.regex(TOPIC, "allowed: 1 to 256 characters without the wildcards + and #"),
    z.refine((v) => !v.includes("\0"), "allowed: no NUL character"),
  ),
);
const readableFileRule = () => z.string().check(z.refine(readable, "allowed: a path to a readable file"));
const readableFile = once(readableFileRule);
// systemd's LoadCredential= puts files in $CREDENTIALS_DIRECTORY; a bare name refers to one there.
const credential: Lazy<string> = (context) =>
  z.pipe(
    z.transform((file: string) =>
      context.env.CREDENTIALS_DIRECTORY && !path.isAbsolute(file)
        ? path.join(context.env.CREDENTIALS_DIRECTORY, file)
        : file,
    ),
    readableFileRule(),
  );
const isBrokerUrl = (value: string) => {
  try {
    return ["mqtt:", "mqtts:", "ws:", "wss:"].includes(new URL(value).protocol);
  } catch {
    return false;
  }
};
const splitList = (v: string) => v.split(",").map((item) => item.trim());
// One broker, or the nodes of one cluster, comma-separated (CONTRACT section 13).
const mqttUrls = once(() =>
  z.pipe(
    z
      .string()
      .check(
        z.refine(
          (v) => splitList(v).every(isBrokerUrl),
          "allowed: a URL like mqtt://host:1883, mqtts://, ws:// or wss://, or a comma-separated list of the nodes of one cluster",
        ),
      ),
    z.transform(splitList),
  ),
);
const groupList = once(() =>
  z.pipe(
    z
      .string()
      .check(
        z.refine(
          (v) => v.trim() === "" || splitList(v).every((g) => NAME_PATTERN.test(g)),
          "allowed: comma-separated group names of 1 to 64 of A-Z a-z 0-9 _ -, or empty for none",
        ),
      ),
    z.transform((v: string) => (v.trim() === "" ? [] : [...new Set(splitList(v))])),
  ),
);
const pinList = (v: string) => v.split(",").map((p) => p.trim());
const pins = once(() =>
  z
    .pipe(
      z
        .string()
        .check(
          z.refine(
            (v) => pinList(v).every((p) => /^\d+$/.test(p) && Number(p) <= 27),
            "allowed: BCM pin numbers 0 to 27",
          ),
        ),
      z.transform((v: string) => pinList(v).map(Number)),
    )
    .check(
      z.refine(
        (list) => list.length === 1 || list.length === 3,
        "allowed: one pin (mono) or three (red,green,blue)",
      ),
      z.refine((list) => new Set(list).size === list.length, "allowed: each pin once"),
    ),
);

function defaultStateFile({ env, cwd }: Context): string {
  // systemd may pass several directories separated by colons; ours is the first.
  const dir = env.STATE_DIRECTORY?.split(":")[0];
  return dir ? path.join(dir, "state.json") : path.join(cwd, ".lamp-agent", "state.json");
}

/**
 * Every variable the agent reads, in the order `--check` lists them, with its rule and its default.
 * .env.example documents exactly these (test/unit/config.test.ts holds it to that).
 */
const TABLE = {
  LAMP_ID: setting(
    once(() => z.string().check(z.regex(NAME_PATTERN, "allowed: 1 to 64 of A-Z a-z 0-9 _ -"))),
    ({ sysfsRoot }) => defaultLampId(sysfsRoot),
  ),
  LAMP_NAME: setting(
    once(() =>
      z.string().check(
        z.minLength(1, "allowed: 1 to 64 characters, no control characters"),
        z.maxLength(64, "allowed: 1 to 64 characters, no control characters"),
        // Printable only: the name goes into Home Assistant, a terminal table and JSON.
        z.refine(
          (v) => ![...v].some((c) => c < " " || c === "\u007f"),
          "allowed: 1 to 64 characters, no control characters",
        ),
      ),
    ),
    ({ lampId }) => lampId,
  ),
  LAMP_GROUPS: setting(groupList, () => [...DEFAULT_GROUPS]),
  GROUP_TOPIC_BASE: setting(topic, () => DEFAULT_GROUP_TOPIC_BASE),
  MQTT_URL: setting(mqttUrls, () => ["mqtt://localhost:1883"]),
  MQTT_USERNAME: optional(text),
  MQTT_PASSWORD: optional(text, { secret: true }),
  MQTT_PASSWORD_FILE: optional(credential),
  MQTT_CA_FILE: optional(readableFile),
  MQTT_CERT_FILE: optional(readableFile),
  MQTT_KEY_FILE: optional(readableFile),
  MQTT_CLIENT_ID: setting(
    once(() =>
      z.string().check(z.regex(/^[\x21-\x7e]{1,64}$/, "allowed: 1 to 64 printable characters, no spaces")),
    ),
    ({ lampId }) => `lamp-${lampId}`,
  ),
  MQTT_KEEPALIVE: setting(integer(1, 3600, " seconds"), () => 10),
  // Milliseconds, not seconds: tests and a broker next door want sub-second reconnects.
  MQTT_RECONNECT_MIN_MS: setting(integer(10, 600_000, " ms"), () => 1000),
  MQTT_RECONNECT_MAX_MS: setting(integer(10, 3_600_000, " ms"), () => 20_000),
  MQTT_TAKEOVER_RETRY_MS: setting(integer(10, 86_400_000, " ms"), () => 300_000),
  MQTT_PROTOCOL: choice(["5", "3.1.1"], "5"),
  TOPIC_BASE: setting(topic, ({ lampId }) => defaultTopicBase(lampId)),
  COMMAND_TOPIC: setting(topic, ({ topicBase }) => commandTopic(topicBase)),
  STATE_TOPIC: setting(topic, ({ topicBase }) => stateTopic(topicBase)),
  PRESENCE_TOPIC: setting(topic, ({ lampId }) => defaultPresenceTopic(lampId)),
  GPIO_DRIVER: choice([...DRIVER_NAMES, "auto"], "auto"),
  LED_PINS: setting(pins, () => [19, 26, 13]),
  LED_ACTIVE_LOW: setting(boolean, () => false),
  PWM_FREQUENCY: setting(integer(1, 40000, " Hz"), () => 1000),
  GAMMA: setting(number(1, 4), () => 2.2),
  DEFAULT_TRANSITION: setting(number(0, MAX_TRANSITION_S, " seconds"), () => 0),
  STATE_FILE: setting(nonEmpty, defaultStateFile),
  POWER_ON: choice(POWER_ON_MODES, "restore"),
  HA_DISCOVERY: setting(boolean, () => true),
  HA_DISCOVERY_PREFIX: setting(topic, () => "homeassistant"),
  TELEMETRY_INTERVAL: setting(integer(0, 86_400, " seconds (0 = none)"), () => 60),
  MOCK_GPIO_TRACE: optional(nonEmpty),
  SYSFS_ROOT: setting(nonEmpty, () => "/sys"),
  LOG_LEVEL: choice(LOG_LEVELS, "info"),
  LOG_FORMAT: choice(LOG_FORMATS, "auto"),
};

type Name = keyof typeof TABLE;
type Values = { readonly [K in Name]: (typeof TABLE)[K] extends Variable<infer T> ? T : never };

/** The row of `name`, typed so that a generic read(name) gets the variable and its value type together. */
function row<K extends Name>(name: K): Variable<Values[K]> {
  const rows: { readonly [P in Name]: Variable<Values[P]> } = TABLE;
  return rows[name];
}

const isName = (name: string): name is Name => Object.hasOwn(TABLE, name);
const NAMES = Object.keys(TABLE).filter(isName);
/** Every variable's name, in table order. */
export const VARIABLE_NAMES: readonly string[] = NAMES;

export interface LoadOptions {
  readonly env?: Env;
  readonly cwd?: string;
  /** Read `.env` from cwd, or the installed configuration without one (default true). */
  readonly dotenv?: boolean;
  /** Where the installed configuration lives (default /etc/lamp-agent); for tests. */
  readonly installedDir?: string;
  /**
   * `client`: only what a client of the lamps reads (`lampctl`): the id, the broker and the topics. The
   * agent's own settings (pins, driver, files) take their defaults unread, so a mistake in one of them
   * cannot stop a client that never uses it.
   */
  readonly scope?: "agent" | "client";
}

/** What `lampctl` reads: who the lamp is, where its broker is, and its topics. */
const CLIENT_NAMES: ReadonlySet<string> = new Set([
  "LAMP_ID",
  "GROUP_TOPIC_BASE",
  "MQTT_URL",
  "MQTT_USERNAME",
  "MQTT_PASSWORD",
  "MQTT_PASSWORD_FILE",
  "MQTT_CA_FILE",
  "MQTT_CERT_FILE",
  "MQTT_KEY_FILE",
  "MQTT_CLIENT_ID",
  "MQTT_PROTOCOL",
  "TOPIC_BASE",
  "COMMAND_TOPIC",
  "STATE_TOPIC",
  "PRESENCE_TOPIC",
  "SYSFS_ROOT",
]);

/** The part of the configuration a client of the lamps has (`loadConfig({ scope: "client" })`). */
export type ClientConfig = Pick<Config, "lampId" | "mqtt" | "topics" | "groupTopicBase">;

/**
 * Environment (then `.env`, or the installed configuration) -> one frozen Config. Throws ConfigError
 * listing every problem; nothing else in the agent reads the environment.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const files =
    options.dotenv === false
      ? { warnings: [] }
      : findConfigFiles({ env, cwd, installedDir: options.installedDir });
  const fromFile = files.file?.values ?? {};
  const problems: string[] = [];
  const effective: EffectiveSetting[] = [];
  const failed = new Set<Name>();

  /** The text a variable is set to, and where it came from; an empty value counts as unset. */
  function given(name: Name): { text: string; source: string } | undefined {
    const fromEnv = env[name];
    if (fromEnv) return { text: fromEnv, source: "environment" };
    const inFile = fromFile[name];
    if (inFile && files.file) return { text: inFile, source: files.file.label };
    if (name === "MQTT_PASSWORD_FILE" && files.passwordFile) {
      return { text: files.passwordFile, source: "installed password file" };
    }
    return undefined;
  }

  const cache: { [K in Name]?: { readonly value: Values[K] } } = {};
  const context: Context = {
    env,
    cwd,
    get lampId() {
      return read("LAMP_ID");
    },
    get topicBase() {
      return read("TOPIC_BASE");
    },
    get sysfsRoot() {
      return read("SYSFS_ROOT");
    },
  };
  function read<K extends Name>(name: K): Values[K] {
    const cached = cache[name];
    if (cached) return cached.value;
    const value = resolve(name, row(name));
    // Seen through K alone, so that TypeScript pairs the name with its own value type.
    const entry: { [P in K]?: { readonly value: Values[P] } } = cache;
    entry[name] = { value };
    return value;
  }
  function resolve<K extends Name>(name: K, variable: Variable<Values[K]>): Values[K] {
    const shown = (value: string) =>
      variable.secret ? "********" : name === "MQTT_URL" ? splitList(value).map(redactUrl).join(",") : value;
    const set = options.scope === "client" && !CLIENT_NAMES.has(name) ? undefined : given(name);
    if (set === undefined) {
      const value = variable.fallback(context);
      if (value !== undefined) effective.push({ name, value: shown(String(value)), source: "default" });
      return value;
    }
    effective.push({ name, value: shown(set.text), source: set.source });
    const parsed = variable.parse(set.text, context);
    if (parsed.ok) return parsed.value;
    problems.push(`${name}=${JSON.stringify(shown(set.text))}: ${parsed.allowed}`);
    failed.add(name);
    // Never used: a problem stops the load. It keeps the values typed and the defaults of others sound.
    return variable.fallback(context);
  }

  for (const name of NAMES) read(name);
  const valid = (...names: Name[]) => names.every((name) => !failed.has(name));

  if (read("MQTT_PASSWORD") !== undefined && read("MQTT_PASSWORD_FILE") !== undefined) {
    problems.push("MQTT_PASSWORD and MQTT_PASSWORD_FILE: set one of them, not both");
  }
  // Whether they are set, not whether they are valid: a bad certificate path is reported on its own.
  if ((given("MQTT_CERT_FILE") === undefined) !== (given("MQTT_KEY_FILE") === undefined)) {
    problems.push("MQTT_CERT_FILE and MQTT_KEY_FILE: a client certificate needs both");
  }
  problems.push(
    ...tlsFileProblems({
      caFile: read("MQTT_CA_FILE"),
      certFile: read("MQTT_CERT_FILE"),
      keyFile: read("MQTT_KEY_FILE"),
    }),
  );
  const reconnect = { initialMs: read("MQTT_RECONNECT_MIN_MS"), maxMs: read("MQTT_RECONNECT_MAX_MS") };
  if (valid("MQTT_RECONNECT_MIN_MS", "MQTT_RECONNECT_MAX_MS") && reconnect.initialMs > reconnect.maxMs) {
    problems.push(
      `MQTT_RECONNECT_MIN_MS=${reconnect.initialMs} and MQTT_RECONNECT_MAX_MS=${reconnect.maxMs}: the minimum must not exceed the maximum`,
    );
  }
  const topics = {
    command: read("COMMAND_TOPIC"),
    state: read("STATE_TOPIC"),
    error: errorTopic(read("TOPIC_BASE")),
    presence: read("PRESENCE_TOPIC"),
    info: infoTopic(read("TOPIC_BASE")),
    telemetry: telemetryTopic(read("TOPIC_BASE")),
  };
  for (const name of ["COMMAND_TOPIC", "STATE_TOPIC"] as const) {
    const value = read(name);
    if (valid(name) && (value === topics.presence || value === topics.error)) {
      problems.push(`${name}=${JSON.stringify(value)}: must differ from the presence and error topics`);
    }
  }
  const unknown = unknownVariables(env, files.file);
  // The agent's own files must say what the agent reads; a client (lampctl) sharing them only warns.
  if (options.scope === "client") unknown.warnings.push(...unknown.problems);
  else problems.push(...unknown.problems);
  if (problems.length > 0) throw new ConfigError(problems);

  const passwordFile = read("MQTT_PASSWORD_FILE");
  const mockTrace = read("MOCK_GPIO_TRACE");
  const urls = read("MQTT_URL");
  const config: Config = {
    lampId: read("LAMP_ID"),
    name: read("LAMP_NAME"),
    groups: read("LAMP_GROUPS"),
    groupTopicBase: read("GROUP_TOPIC_BASE"),
    telemetryInterval: read("TELEMETRY_INTERVAL"),
    mqtt: {
      url: urls[0] ?? "mqtt://localhost:1883",
      urls,
      clientId: read("MQTT_CLIENT_ID"),
      keepalive: read("MQTT_KEEPALIVE"),
      reconnect,
      takeoverRetryMs: read("MQTT_TAKEOVER_RETRY_MS"),
      protocol: read("MQTT_PROTOCOL") === "3.1.1" ? 4 : 5,
      username: read("MQTT_USERNAME"),
      password:
        read("MQTT_PASSWORD") ?? (passwordFile && readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "")),
      passwordFile,
      caFile: read("MQTT_CA_FILE"),
      certFile: read("MQTT_CERT_FILE"),
      keyFile: read("MQTT_KEY_FILE"),
    },
    topics,
    driver: read("GPIO_DRIVER"),
    pins: read("LED_PINS"),
    activeLow: read("LED_ACTIVE_LOW"),
    frequency: read("PWM_FREQUENCY"),
    gamma: read("GAMMA"),
    defaultTransition: read("DEFAULT_TRANSITION"),
    stateFile: path.resolve(cwd, read("STATE_FILE")),
    powerOn: read("POWER_ON"),
    ha: { enabled: read("HA_DISCOVERY"), prefix: read("HA_DISCOVERY_PREFIX") },
    mockTrace: mockTrace === undefined ? undefined : path.resolve(cwd, mockTrace),
    sysfsRoot: read("SYSFS_ROOT"),
    log: { level: read("LOG_LEVEL"), format: read("LOG_FORMAT") },
  };
  const warnings = [
    ...files.warnings,
    ...unknown.warnings,
    ...secretFileWarnings([
      { name: "MQTT_KEY_FILE", path: config.mqtt.keyFile },
      { name: "MQTT_PASSWORD_FILE", path: passwordFile },
    ]),
  ];
  return { config: deepFreeze(config), effective, warnings, file: files.file?.label };
}

// A misspelling in the environment: at most this many edits from one of our names.
const ENVIRONMENT_TYPO = 2;

// Prefixes only our variables use; a variable in the environment with one is meant for us.
const OUR_PREFIXES = ["LAMP_", "MQTT_", "LED_", "GPIO_", "PWM_", "HA_DISCOVERY"];

/**
 * Our names by length, each with its characters as a class: what that matches in another name, the
 * two share.
 */
const NAMES_BY_LENGTH = new Map<number, { name: string; letters: RegExp }[]>();
for (const name of NAMES) {
  const letters = new RegExp(`[${[...new Set(name)].join("").replace(/[\\\]^-]/g, "\\$&")}]`, "g");
  const same = NAMES_BY_LENGTH.get(name.length) ?? [];
  same.push({ name, letters });
  NAMES_BY_LENGTH.set(name.length, same);
}

/**
 * Our names that `upper` may be a typo of: as long within ENVIRONMENT_TYPO characters, with at most that
 * many characters ours lacks (each edit brings in one at most). The environment holds dozens of names
 * (npm's alone, 73), and the edit distance from each to all of ours made V8 optimize it at every start:
 * 13 ms of compiling and 5 MiB more RSS for a lamp that then idles (docs/performance.md). This leaves
 * the distance a few names at most, with few steps of its own: V8 optimizes a loop that runs a few
 * thousand times, and that alone pages its optimizing compiler in.
 */
function typoCandidates(upper: string): string[] {
  const near: string[] = [];
  for (let length = upper.length - ENVIRONMENT_TYPO; length <= upper.length + ENVIRONMENT_TYPO; length++) {
    for (const { name, letters } of NAMES_BY_LENGTH.get(length) ?? []) {
      if (upper.replace(letters, "").length <= ENVIRONMENT_TYPO) near.push(name);
    }
  }
  return near;
}

/** The variable a user probably meant: `LED_PINS` for `LED_PIN` or `led_pins`. */
const meant = (name: string) => suggest(name.toUpperCase(), NAMES);

/**
 * Variables that look like ours but are not (`LED_PIN=` for LED_PINS). In the configuration file, which
 * is only for us, a look-alike is a problem: the agent would otherwise run with a default the user
 * meant to change (the pins, the broker); other unknown names there are warnings. In the environment,
 * which is everyone's, only those with our prefixes or a near miss of one of our names are warned about.
 */
function unknownVariables(
  env: Env,
  file: ConfigFile | undefined,
): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  const unknown = (name: string) => !isName(name);
  for (const name of Object.keys(file?.values ?? {}).filter(unknown)) {
    (meant(name) ? problems : warnings).push(unknownWarning(name, file?.label ?? ".env"));
  }
  for (const name of Object.keys(env).filter(unknown)) {
    const upper = name.toUpperCase();
    // Not a short one: the environment has names like `_` and `D` that would start one of ours. And only
    // a typo's distance: the environment is everyone's, and OpenSSL's SSL_CERT_FILE is 4 edits from ours.
    const near = name.length >= 4 ? typoCandidates(upper) : [];
    const ours =
      OUR_PREFIXES.some((prefix) => upper.startsWith(prefix)) ||
      near.some((known) => distance(upper, known) <= ENVIRONMENT_TYPO);
    if (ours) warnings.push(unknownWarning(name, "environment"));
  }
  return { problems, warnings };
}

function unknownWarning(name: string, source: string): string {
  const guess = meant(name);
  return `unknown variable ${name} (${source})${guess ? `; did you mean ${guess}?` : "; see .env.example for the variables"}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

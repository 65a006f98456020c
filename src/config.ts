import { accessSync, constants, readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import path from "node:path";
import dotenv from "dotenv";
import { z } from "zod";
import { DRIVER_NAMES, type DriverName } from "./drivers/driver.js";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.js";
import { secretFileWarnings, tlsFileProblems } from "./mqtt/tls-files.js";

export const POWER_ON_MODES = ["restore", "on", "off"] as const;
export type PowerOn = (typeof POWER_ON_MODES)[number];

export interface Config {
  readonly lampId: string;
  readonly mqtt: {
    readonly url: string;
    readonly clientId: string;
    readonly keepalive: number;
    /** Reconnect backoff: first delay, doubling (with jitter) up to the maximum. */
    readonly reconnect: { readonly initialMs: number; readonly maxMs: number };
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
  readonly source: "environment" | ".env" | "default";
}

export interface LoadedConfig {
  readonly config: Config;
  /** Every variable, as used, secrets masked: what `--check` prints. */
  readonly effective: readonly EffectiveSetting[];
  /** Not errors, but worth saying at start and in `--check`: secret files others can read. */
  readonly warnings: readonly string[];
}

const SECRET = new Set(["MQTT_PASSWORD"]);

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

function shown(name: string, value: string): string {
  if (SECRET.has(name)) return "********";
  return name === "MQTT_URL" ? redactUrl(value) : value;
}
const TOPIC = /^[^+#]{1,256}$/;
const ID = /^[A-Za-z0-9_-]{1,64}$/;

const truthy = new Set(["true", "1", "yes", "on"]);
const falsy = new Set(["false", "0", "no", "off"]);
const bool = z
  .string()
  .transform((v) => v.trim().toLowerCase())
  .refine((v) => truthy.has(v) || falsy.has(v), "allowed: true or false")
  .transform((v) => truthy.has(v));
// Plain decimals only: Number() would also take "0x10", "1e3" and " " (as 0).
const DECIMAL = /^\s*-?\d+(\.\d+)?\s*$/;
const number = (min: number, max: number, unit = "", whole = false) => {
  const allowed = `allowed: ${whole ? "a whole number" : "a number"} from ${min} to ${max}${unit}`;
  const value = z.number().min(min, allowed).max(max, allowed);
  return z
    .string()
    .regex(DECIMAL, allowed)
    .transform(Number)
    .pipe(whole ? value.int(allowed) : value);
};
const integer = (min: number, max: number, unit = "") => number(min, max, unit, true);
const oneOf = <T extends string>(values: readonly T[]) =>
  z.enum(values as unknown as [T, ...T[]], { error: `allowed: ${values.join(", ")}` });
const topic = z
  .string()
  .regex(TOPIC, "allowed: 1 to 256 characters without the wildcards + and #")
  .refine((v) => !v.includes("\0"), "allowed: no NUL character");
const readable = z.string().refine((file) => {
  try {
    accessSync(file, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}, "allowed: a path to a readable file");
const mqttUrl = z.string().refine((value) => {
  try {
    return ["mqtt:", "mqtts:", "ws:", "wss:"].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}, "allowed: a URL like mqtt://host:1883, mqtts://, ws:// or wss://");
const pins = z
  .string()
  .transform((v) => v.split(",").map((p) => p.trim()))
  .refine((list) => list.every((p) => /^\d+$/.test(p) && Number(p) <= 27), "allowed: BCM pin numbers 0 to 27")
  .transform((list) => list.map(Number))
  .refine(
    (list) => list.length === 1 || list.length === 3,
    "allowed: one pin (mono) or three (red,green,blue)",
  )
  .refine((list) => new Set(list).size === list.length, "allowed: each pin once");

/** The default id: the MAC of the first non-loopback interface, like LAMPI, else the host name. */
export function defaultLampId(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (!address.internal && address.mac && address.mac !== "00:00:00:00:00:00") {
        return address.mac.replaceAll(":", "");
      }
    }
  }
  return (
    hostname()
      .replace(/[^A-Za-z0-9_-]/g, "-")
      .slice(0, 64) || "lamp"
  );
}

function defaultStateFile(env: NodeJS.ProcessEnv, cwd: string): string {
  // systemd may pass several directories separated by colons; ours is the first.
  const dir = env.STATE_DIRECTORY?.split(":")[0];
  return dir ? path.join(dir, "state.json") : path.join(cwd, ".lamp-agent", "state.json");
}

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Read `.env` from cwd (default true). */
  readonly dotenv?: boolean;
}

/**
 * Environment (then `.env`) -> one frozen Config. Throws ConfigError listing every problem; nothing
 * else in the agent reads the environment.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const fromFile: Record<string, string> = {};
  if (options.dotenv !== false) {
    dotenv.config({ path: path.join(cwd, ".env"), processEnv: fromFile, quiet: true });
  }
  const problems: string[] = [];
  const effective: EffectiveSetting[] = [];

  function read<T>(name: string, schema: z.ZodType<T>, fallback: () => string | undefined): T | undefined;
  function read<T>(name: string, schema: z.ZodType<T>, fallback: () => string | undefined, required: true): T;
  function read<T>(name: string, schema: z.ZodType<T>, fallback: () => string | undefined): T | undefined {
    const fromEnv = env[name];
    const raw = fromEnv !== undefined && fromEnv !== "" ? fromEnv : fromFile[name] || undefined;
    const source = raw === undefined ? "default" : fromEnv ? "environment" : ".env";
    const value = raw ?? fallback();
    if (value === undefined) return undefined;
    effective.push({ name, value: shown(name, value), source });
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    problems.push(
      `${name}=${JSON.stringify(shown(name, value))}: ${result.error.issues[0]?.message ?? "invalid"}`,
    );
    return undefined;
  }
  const none = () => undefined;

  const lampId = read("LAMP_ID", z.string().regex(ID, "allowed: 1 to 64 of A-Z a-z 0-9 _ -"), defaultLampId);
  const id = lampId ?? "invalid";
  const url = read("MQTT_URL", mqttUrl, () => "mqtt://localhost:1883");
  const username = read("MQTT_USERNAME", z.string(), none);
  const password = read("MQTT_PASSWORD", z.string(), none);
  const passwordFile = read(
    "MQTT_PASSWORD_FILE",
    // systemd's LoadCredential= puts files in $CREDENTIALS_DIRECTORY; a bare name refers to one there.
    z
      .string()
      .transform((file) =>
        env.CREDENTIALS_DIRECTORY && !path.isAbsolute(file)
          ? path.join(env.CREDENTIALS_DIRECTORY, file)
          : file,
      )
      .pipe(readable),
    none,
  );
  if (password !== undefined && passwordFile !== undefined) {
    problems.push("MQTT_PASSWORD and MQTT_PASSWORD_FILE: set one of them, not both");
  }
  const caFile = read("MQTT_CA_FILE", readable, none);
  const certFile = read("MQTT_CERT_FILE", readable, none);
  const keyFile = read("MQTT_KEY_FILE", readable, none);
  const certSet = Boolean(env.MQTT_CERT_FILE || fromFile.MQTT_CERT_FILE);
  const keySet = Boolean(env.MQTT_KEY_FILE || fromFile.MQTT_KEY_FILE);
  if (certSet !== keySet) {
    problems.push("MQTT_CERT_FILE and MQTT_KEY_FILE: a client certificate needs both");
  }
  problems.push(...tlsFileProblems({ caFile, certFile, keyFile }));
  const clientId = read(
    "MQTT_CLIENT_ID",
    z.string().regex(/^[\x21-\x7e]{1,64}$/, "allowed: 1 to 64 printable characters, no spaces"),
    () => `lamp-${id}`,
  );
  const keepalive = read("MQTT_KEEPALIVE", integer(1, 3600, " seconds"), () => "10");
  // Milliseconds, not seconds: tests and a broker next door want sub-second reconnects.
  const reconnectMin = read("MQTT_RECONNECT_MIN_MS", integer(10, 600_000, " ms"), () => "1000");
  const reconnectMax = read("MQTT_RECONNECT_MAX_MS", integer(10, 3_600_000, " ms"), () => "60000");
  if (reconnectMin !== undefined && reconnectMax !== undefined && reconnectMin > reconnectMax) {
    problems.push(
      `MQTT_RECONNECT_MIN_MS=${reconnectMin} and MQTT_RECONNECT_MAX_MS=${reconnectMax}: the minimum must not exceed the maximum`,
    );
  }
  const protocol = read("MQTT_PROTOCOL", oneOf(["5", "3.1.1"] as const), () => "5");
  const base = read("TOPIC_BASE", topic, () => `lamp/${id}`);
  const command = read("COMMAND_TOPIC", topic, () => `${base}/set_config`);
  const state = read("STATE_TOPIC", topic, () => `${base}/changed`);
  const presence = read("PRESENCE_TOPIC", topic, () => `state/${id}`);
  const error = `${base}/error`;
  for (const [name, value] of [
    ["COMMAND_TOPIC", command],
    ["STATE_TOPIC", state],
  ] as const) {
    if (value !== undefined && (value === presence || value === error)) {
      problems.push(`${name}=${JSON.stringify(value)}: must differ from the presence and error topics`);
    }
  }
  const driver = read("GPIO_DRIVER", oneOf([...DRIVER_NAMES, "auto"] as const), () => "auto");
  const pinList = read("LED_PINS", pins, () => "19,26,13");
  const activeLow = read("LED_ACTIVE_LOW", bool, () => "false");
  const frequency = read("PWM_FREQUENCY", integer(1, 40000, " Hz"), () => "1000");
  const gamma = read("GAMMA", number(1, 4), () => "2.2");
  const defaultTransition = read("DEFAULT_TRANSITION", number(0, 3600, " seconds"), () => "0");
  const stateFile = read("STATE_FILE", z.string().min(1), () => defaultStateFile(env, cwd));
  const powerOn = read("POWER_ON", oneOf(POWER_ON_MODES), () => "restore");
  const haEnabled = read("HA_DISCOVERY", bool, () => "true");
  const haPrefix = read("HA_DISCOVERY_PREFIX", topic, () => "homeassistant");
  const mockTrace = read("MOCK_GPIO_TRACE", z.string().min(1), none);
  const sysfsRoot = read("SYSFS_ROOT", z.string().min(1), () => "/sys");
  const logLevel = read("LOG_LEVEL", oneOf(LOG_LEVELS), () => "info");
  const logFormat = read("LOG_FORMAT", oneOf(LOG_FORMATS), () => "auto");

  if (problems.length > 0) throw new ConfigError(problems);
  const passwordValue =
    password ?? (passwordFile ? readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "") : undefined);
  // Every value below was read with a fallback, so it is defined once there are no problems.
  const config: Config = {
    lampId: lampId as string,
    mqtt: {
      url: url as string,
      clientId: clientId as string,
      keepalive: keepalive as number,
      reconnect: { initialMs: reconnectMin as number, maxMs: reconnectMax as number },
      protocol: protocol === "3.1.1" ? 4 : 5,
      username,
      password: passwordValue,
      passwordFile,
      caFile,
      certFile,
      keyFile,
    },
    topics: { command: command as string, state: state as string, error, presence: presence as string },
    driver: driver as DriverName | "auto",
    pins: pinList as number[],
    activeLow: activeLow as boolean,
    frequency: frequency as number,
    gamma: gamma as number,
    defaultTransition: defaultTransition as number,
    stateFile: path.resolve(cwd, stateFile as string),
    powerOn: powerOn as PowerOn,
    ha: { enabled: haEnabled as boolean, prefix: haPrefix as string },
    mockTrace: mockTrace === undefined ? undefined : path.resolve(cwd, mockTrace),
    sysfsRoot: sysfsRoot as string,
    log: { level: logLevel as LogLevel, format: logFormat as LogFormat },
  };
  const warnings = secretFileWarnings([
    { name: "MQTT_KEY_FILE", path: keyFile },
    { name: "MQTT_PASSWORD_FILE", path: passwordFile },
  ]);
  return { config: deepFreeze(config), effective, warnings };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/**
 * The payloads the agent publishes and `lampctl` reads, in one place so the two cannot drift apart.
 */

export const ONLINE = "1";
export const OFFLINE = "0";

export interface StateMessage {
  readonly on: boolean;
  readonly color: { readonly h: number; readonly s: number };
  readonly brightness: number;
  /** Who caused it: a command's `client`, the agent's own id on connect, null for an unnamed sender. */
  readonly client: string | null;
}

/** `<base>/changed`: the LAMPI shape, plus the `client` that caused it. */
export function statePayload(
  state: Pick<StateMessage, "on" | "color" | "brightness">,
  client: string | null,
): string {
  // Written out rather than JSON.stringify'd: one per command, and the generic path cost a steady
  // command more than the rest of this module's work. The numbers are validated and finite (a finite
  // number prints the same either way); the client, a string from the wire, is escaped by JSON.
  const { on, color, brightness } = state;
  return `{"on":${on},"color":{"h":${decimal(color.h)},"s":${decimal(color.s)}},"brightness":${decimal(brightness)},"client":${client === null ? "null" : quoted(client)}}`;
}

let lastClient = "";
let lastQuoted = '""';

/** The client's JSON text, kept for the next state: a stream of commands comes from one sender. */
function quoted(client: string): string {
  if (client !== lastClient) {
    lastClient = client;
    lastQuoted = JSON.stringify(client);
  }
  return lastQuoted;
}

/** "0", "0.01" ... "1": the text of every two-decimal value, made once. */
const TWO_DECIMALS = Array.from({ length: 101 }, (_, i) => String(i / 100));

/**
 * A state's number as JSON writes it. Every one is kept at two decimals (quantize()), so it is one of
 * 101 texts, looked up rather than formatted (a double's shortest text costs more than the rest of the
 * payload); any other number is formatted as usual.
 */
function decimal(value: number): string {
  const hundredths = Math.round(value * 100);
  return hundredths >= 0 && hundredths <= 100 && hundredths / 100 === value
    ? (TWO_DECIMALS[hundredths] ?? String(value))
    : String(value);
}

export interface ErrorMessage {
  readonly error: string;
  readonly message: string;
  readonly client: string | null;
}

/** `<base>/error`: why a command was refused, with the sender when known. */
export function errorPayload(error: ErrorMessage): string {
  return JSON.stringify({ error: error.error, message: error.message, client: error.client });
}

/** `<base>/info`: what a lamp is, retained (CONTRACT section 14). */
export interface InfoMessage {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly driver: string;
  readonly pins: readonly number[];
  readonly groups: readonly string[];
  readonly board: string | null;
  readonly node: string;
  readonly started_at: string;
  /** The broker node it is connected to (a cluster lists several), the password masked. */
  readonly broker: string;
  /** "5" or "3.1.1". */
  readonly mqtt: string;
  /** TELEMETRY_INTERVAL in seconds; 0 when the lamp sends none. */
  readonly telemetry_interval: number;
  /** What is wrong with this lamp's setup, when the agent knows (another client with its client id). */
  readonly problem?: string;
  /**
   * Random per process: two agents given one LAMP_ID publish this topic in turns, and each can tell the
   * other's message from its own (features/info.ts).
   */
  readonly instance: string;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** A JSON object off the wire, or undefined for anything else (anything may arrive on a topic). */
function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const json: unknown = JSON.parse(text);
    return isObject(json) ? json : undefined;
  } catch {
    return undefined;
  }
}

const isUnit = (value: unknown): value is number => typeof value === "number" && value >= 0 && value <= 1;

/** A state message off the wire, or undefined when it is not one (anything may arrive on a topic). */
export function parseState(text: string): StateMessage | undefined {
  const json = jsonObject(text);
  if (!json || typeof json.on !== "boolean" || !isUnit(json.brightness)) return undefined;
  const color = json.color;
  if (!isObject(color) || !isUnit(color.h) || !isUnit(color.s)) return undefined;
  const client = typeof json.client === "string" ? json.client : null;
  return { on: json.on, color: { h: color.h, s: color.s }, brightness: json.brightness, client };
}

/** An error message off the wire, or undefined. */
export function parseError(text: string): ErrorMessage | undefined {
  const json = jsonObject(text);
  if (!json || typeof json.error !== "string" || typeof json.message !== "string") return undefined;
  return {
    error: json.error,
    message: json.message,
    client: typeof json.client === "string" ? json.client : null,
  };
}

/** An info message off the wire: what `lampctl ls` needs of it, or undefined. */
export function parseInfo(text: string): Partial<InfoMessage> | undefined {
  const json = jsonObject(text);
  if (!json || typeof json.id !== "string") return undefined;
  return {
    id: json.id,
    ...(typeof json.name === "string" && { name: json.name }),
    ...(typeof json.version === "string" && { version: json.version }),
    ...(Array.isArray(json.groups) && { groups: json.groups.filter((g) => typeof g === "string") }),
    ...(typeof json.telemetry_interval === "number" && { telemetry_interval: json.telemetry_interval }),
    ...(typeof json.problem === "string" && { problem: json.problem }),
    ...(typeof json.instance === "string" && { instance: json.instance }),
  };
}

/** `<base>/telemetry`: how a lamp is doing, every TELEMETRY_INTERVAL s, not retained (CONTRACT section 14). */
export interface TelemetryMessage {
  /** Seconds since the agent started. */
  readonly uptime_s: number;
  /** Connects after the first one, since the agent started. */
  readonly reconnects: number;
  /** The agent's resident memory, MiB. */
  readonly rss_mib: number;
  /** Null where the machine has no thermal zone. */
  readonly cpu_temp_c: number | null;
  /** Null on a wired or non-Pi machine. */
  readonly wifi_rssi_dbm: number | null;
  /** The one-minute load average. */
  readonly load1: number;
}

import { format } from "node:util";
import type { IClientOptions } from "mqtt";
import { type Config, redactUrl } from "../config.js";
import type { Logger } from "../log.js";
import { loadTlsMaterial } from "../tls-files.js";
import type { ErrorContext } from "./errors.js";

/** The connection settings every client of ours shares: the agent, the one-shot clients and lampctl. */
export type MqttSettings = Config["mqtt"];

/**
 * Options shared by every client: credentials, TLS material read from disk now, and MQTT.js's debug
 * output routed to our logger at trace with every secret scrubbed (its own `debug` output prints whole
 * CONNECT packets, password included, under DEBUG=mqttjs*).
 */
export function baseClientOptions(settings: MqttSettings, logger: Logger): IClientOptions {
  // writeCache: MQTT.js otherwise builds 65536 two-byte buffers for packet ids at the first write:
  // 6 MB of heap and 15 ms of CPU at every start, to save one tiny allocation per packet.
  const options: IClientOptions = { ...loadTlsMaterial(settings), writeCache: false };
  if (settings.username !== undefined) options.username = settings.username;
  if (settings.password !== undefined) options.password = settings.password;
  const secrets = [settings.password, ...settings.urls.map(safeUrlPassword)].filter((s): s is string => !!s);
  // MQTT.js calls this for every packet: below trace, a function that does nothing (the level is fixed
  // for the life of the process).
  if (!logger.isLevelEnabled("trace")) {
    options.log = () => undefined;
    return options;
  }
  options.log = (...args: unknown[]) => {
    let text = format(...args.map((arg) => hidePasswordField(arg)));
    for (const secret of secrets) text = text.replaceAll(secret, "********");
    logger.trace({ mqttjs: text }, "mqtt.js");
  };
  return options;
}

/** What explainConnectionError needs to know of the settings, for one node, its password masked. */
export function errorContext(
  settings: MqttSettings,
  protocol: 4 | 5,
  url: string = settings.url,
): ErrorContext {
  return {
    url: redactUrl(url),
    protocol,
    caFile: settings.caFile,
    clientCertificate: settings.certFile !== undefined,
    credentials: settings.username !== undefined || settings.password !== undefined || urlHasCredentials(url),
  };
}

/**
 * A 3.1.1-only broker (Aedes, NATS, Mosquitto 1.x) answers an MQTT 5 CONNECT with "unacceptable
 * protocol version": 1 in 3.1.1 terms, 132 in MQTT 5's.
 */
export function refusesMqtt5(error: unknown, protocol: 4 | 5): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return protocol === 5 && (code === 1 || code === 132);
}

/** Makes these options speak 3.1.1 from the next connect on (MQTT.js reuses them for every reconnect). */
export function speak311(options: IClientOptions): void {
  options.protocolVersion = 4;
  delete options.properties;
}

/** The protocol as people write it, for logs and `--check`. */
export function protocolName(protocol: 4 | 5): string {
  return protocol === 5 ? "5" : "3.1.1";
}

function urlHasCredentials(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.username !== "" || parsed.password !== "";
  } catch {
    return false;
  }
}

function safeUrlPassword(url: string): string | undefined {
  try {
    const password = new URL(url).password;
    return password ? decodeURIComponent(password) : undefined;
  } catch {
    return undefined;
  }
}

function hidePasswordField(arg: unknown): unknown {
  if (arg && typeof arg === "object" && "password" in arg) return { ...arg, password: "********" };
  return arg;
}

import { type Logger as PinoLogger, pino } from "pino";
import { statusLine } from "./status-line.js";

export type Logger = PinoLogger;
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["auto", "json", "text"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

// syslog priorities for pino's numeric levels; journald reads a leading <N> as the line's priority.
const SYSLOG: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };
const NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const SKIP = new Set(["level", "time", "msg", "pid", "hostname"]);

function formatValue(value: unknown): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  if (value !== null && typeof value === "object" && "message" in value && "type" in value) {
    return JSON.stringify((value as { message: unknown }).message);
  }
  return JSON.stringify(value);
}

/** One pino JSON line -> `LEVEL message key=value ...`, with a `<N>` prefix when journald reads it. */
export function toText(line: string, journald: boolean): string {
  const entry = JSON.parse(line) as Record<string, unknown>;
  const level = Number(entry.level);
  const fields = Object.entries(entry)
    .filter(([key]) => !SKIP.has(key))
    .map(([key, value]) => `${key}=${formatValue(value)}`);
  const text = [String(entry.msg ?? ""), ...fields].join(" ");
  if (journald) return `<${SYSLOG[level] ?? 6}>${text}\n`;
  const time = new Date(Number(entry.time)).toISOString().slice(11, 23);
  return `${time} ${(NAMES[level] ?? "INFO").padEnd(5)} ${text}\n`;
}

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Only `write` is used, so a test can capture lines with a plain object. */
  readonly stream?: Pick<NodeJS.WritableStream, "write">;
}

/**
 * Logs go to stdout, synchronously, so nothing is lost when the process exits right after a fatal
 * line. `auto` is text for people (a terminal, or journald, which adds its own timestamps) and
 * JSON lines for anything else that collects stdout.
 */
export function createLogger(options: LoggerOptions): Logger {
  const out = options.stream ?? process.stdout;
  const journald = options.stream === undefined && process.env.JOURNAL_STREAM !== undefined;
  const isTty = options.stream === undefined && process.stdout.isTTY === true;
  const format = options.format === "auto" ? (journald || isTty ? "text" : "json") : options.format;
  const destination = {
    write(line: string): void {
      const text = format === "text" ? toText(line, journald) : line;
      statusLine.around(() => out.write(text));
    },
  };
  return pino({ level: options.level, base: undefined }, destination);
}

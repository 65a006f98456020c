import { createLogger, type Logger, type LogLevel } from "../../src/log.js";

/** One parsed JSON log line, as the agent writes them. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** pino's numeric levels. */
export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

/** A logger that drops everything. */
export function silentLogger(): Logger {
  return createLogger({ level: "silent", format: "json" });
}

/** The one captured logger for tests: a JSON logger whose `lines` holds every line written so far, parsed. */
export function captureLogger(level: LogLevel = "debug"): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  // createLogger only calls `write`, synchronously; a plain object keeps the capture synchronous too.
  const stream: Pick<NodeJS.WritableStream, "write"> = {
    write(chunk: string | Uint8Array): boolean {
      for (const line of String(chunk).split("\n")) {
        if (line.trim() !== "") lines.push(JSON.parse(line) as LogLine);
      }
      return true;
    },
  };
  return { logger: createLogger({ level, format: "json", stream }), lines };
}

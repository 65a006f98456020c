import { createLogger, type Logger } from "../../src/log.js";

/** A logger that drops everything. */
export function silentLogger(): Logger {
  return createLogger({ level: "silent", format: "json" });
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** A JSON logger on a memory stream; `lines` holds every parsed line written so far. */
export function memoryLogger(level: "trace" | "debug" | "info" = "debug"): {
  logger: Logger;
  lines: LogLine[];
} {
  const lines: LogLine[] = [];
  // createLogger only calls `write`, synchronously; a plain object keeps the capture synchronous too.
  const stream = {
    write(chunk: string): boolean {
      for (const line of chunk.split("\n")) {
        if (line.trim() !== "") lines.push(JSON.parse(line) as LogLine);
      }
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  return { logger: createLogger({ level, format: "json", stream }), lines };
}

/** pino's numeric levels. */
export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

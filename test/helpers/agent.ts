import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Agent, driverOptions } from "../../src/agent.js";
import { loadConfig } from "../../src/config.js";
import { MockDriver } from "../../src/drivers/mock.js";
import type { LogLevel } from "../../src/log.js";
import type { Backoff } from "../../src/mqtt/connection.js";
import { captureLogger, type LogLine } from "./log.js";

export interface RunningAgent {
  readonly agent: Agent;
  readonly driver: MockDriver;
  readonly logs: LogLine[];
  readonly id: string;
  readonly dir: string;
  stop(): Promise<void>;
}

let counter = 0;

export interface StartOptions {
  /** Log level of the captured logs (default debug). */
  readonly level?: LogLevel;
  /** Reconnect backoff, shortened for tests that watch retries. */
  readonly backoff?: Backoff;
  /** Where the telemetry reads /proc/net/wireless (a fake tree). */
  readonly procRoot?: string;
}

/** The real Agent, in-process, on a mock driver, with its log lines captured as objects. */
export async function startAgent(
  url: string,
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<RunningAgent> {
  const id = env.LAMP_ID ?? `t${process.pid}x${++counter}`;
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-agent-"));
  const { config } = loadConfig({
    dotenv: false,
    env: {
      MQTT_URL: url,
      LAMP_ID: id,
      GPIO_DRIVER: "mock",
      STATE_FILE: path.join(dir, "state.json"),
      ...env,
    },
  });
  const { logger, lines: logs } = captureLogger(options.level ?? "debug");
  const driver = new MockDriver(driverOptions(config, logger));
  const agent = new Agent(config, logger, {
    driver,
    ...(options.backoff && { backoff: options.backoff }),
    ...(options.procRoot && { procRoot: options.procRoot }),
  });
  await agent.openHardware();
  agent.connect();
  return { agent, driver, logs, id, dir, stop: () => agent.stop() };
}

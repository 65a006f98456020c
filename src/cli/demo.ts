import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { Agent } from "../agent.js";
import { ConfigError, type LoadedConfig, loadConfig } from "../config.js";
import type { LampState } from "../lamp/state.js";
import { EXIT_CONFIG, EXIT_OK, exitOnBugs, onSignals } from "../lifecycle.js";
import { createLogger } from "../log.js";
import { parseCommandLine, UsageError } from "./args.js";

const HELP = `npm run demo: the whole agent on a laptop, with no broker and no Pi

Usage: npm run demo [-- --help]

Starts an embedded MQTT broker on a free port and the agent with the mock driver, which draws the
lamp in this terminal, then prints the commands that drive it. Ctrl-C stops it. The agent's
variables (.env.example) apply, except the broker and the driver; by default LAMP_ID=demo,
STATE_FILE=.lamp-agent/demo-state.json and HA_DISCOVERY=false.`;

/** `--help`, or one line and exit code 2 for anything else, as lamp-agent and lampctl do. */
function parseOrExit(args: string[]): void {
  try {
    const { values } = parseCommandLine({ args, options: { help: { type: "boolean", short: "h" } } });
    if (values.help) {
      process.stdout.write(`${HELP}\n`);
      process.exit(EXIT_OK);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`lamp-agent demo: ${error.message} (npm run demo -- --help lists the options)\n`);
    process.exit(EXIT_CONFIG);
  }
}

/** The agent's own answer to a bad configuration: the problems, one a line, and exit code 2. */
function loadOrExit(env: NodeJS.ProcessEnv): LoadedConfig {
  try {
    return loadConfig({ env });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`lamp-agent demo: ${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
}

/**
 * The whole agent on a laptop: an embedded broker (Aedes, a dev dependency, imported only here), the mock
 * driver drawing the lamp, and the commands to drive it. The agent itself never starts a broker.
 */
async function main(): Promise<void> {
  parseOrExit(process.argv.slice(2));
  const { Aedes } = await import("aedes");
  const broker = await Aedes.createBroker();
  // Nagle's algorithm off, as Mosquitto's set_tcp_nodelay: with it on, a client that commands at QoS 1 and
  // listens at QoS 1 (LAMPI's UIs, lampctl) waits for its delayed ACK, 40 ms a command (bench/nagle.mjs).
  const server = net.createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const url = `mqtt://127.0.0.1:${port}`;

  const { config } = loadOrExit({
    ...process.env,
    MQTT_URL: url,
    // Aedes speaks MQTT 3.1.1 only: say so up front rather than be refused MQTT 5 and warn about it.
    MQTT_PROTOCOL: "3.1.1",
    LAMP_ID: process.env.LAMP_ID ?? "demo",
    GPIO_DRIVER: "mock",
    HA_DISCOVERY: process.env.HA_DISCOVERY ?? "false",
    STATE_FILE: process.env.STATE_FILE ?? path.join(".lamp-agent", "demo-state.json"),
    LOG_FORMAT: process.env.LOG_FORMAT ?? "text",
  });
  const { topics } = config;
  // npx: in a clone, `lampctl` is not on the PATH (npm links a package's own bin only when installed).
  const lampctl = `npx lampctl --url ${url} --id ${config.lampId}`;
  const restoring = config.powerOn === "restore" && existsSync(config.stateFile);
  process.stdout.write(
    [
      "",
      `lamp-agent demo: broker ${url}, lamp "${config.lampId}", mock driver (no Pi needed)`,
      "",
      "In another terminal, from this directory:",
      `  mosquitto_sub -h 127.0.0.1 -p ${port} -v -t 'state/+' -t 'lamp/#'`,
      `  mosquitto_pub -h 127.0.0.1 -p ${port} -t ${topics.command} -m '{"on": true, "color": {"h": 0.66, "s": 1}, "brightness": 0.8, "client": "me"}'`,
      `  mosquitto_pub -h 127.0.0.1 -p ${port} -t ${topics.command} -m '{"brightness": 2}'    # an error on ${topics.error}`,
      `  ${lampctl} --hue 0.33 --saturation 1 --brightness 1 --transition 2`,
      `  ${lampctl} --off`,
      `  ${lampctl} watch`,
      "",
      "Ctrl-C stops the demo.",
      "",
      "",
    ].join("\n"),
  );

  const logger = createLogger(config.log);
  exitOnBugs(logger);
  const agent = new Agent(config, logger, { draw: process.stdout.isTTY ? process.stdout : undefined });
  await agent.openHardware();
  if (restoring && agent.state) process.stdout.write(`${restored(agent.state, config.stateFile)}\n\n`);
  onSignals(logger, async () => {
    await agent.stop();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    server.close();
  });
  agent.connect();
}

/** Why a second demo may start dark: the lamp is as the last run left it. */
function restored(state: LampState, file: string): string {
  const relative = path.relative(process.cwd(), file);
  const shown = relative && !relative.startsWith("..") ? relative : file;
  return `The lamp starts as the last demo left it (${state.on ? "on" : "off"}), from ${shown}; POWER_ON=on npm run demo starts it lit, deleting the file starts afresh.`;
}

// Not a top-level await: the bundle is CommonJS (scripts/build.mjs).
void main();

import net from "node:net";
import path from "node:path";
import { Agent } from "../agent.js";
import { ConfigError, type LoadedConfig, loadConfig } from "../config.js";
import { EXIT_CONFIG, exitOnBugs, onSignals } from "../lifecycle.js";
import { createLogger } from "../log.js";

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
  const { Aedes } = await import("aedes");
  const broker = await Aedes.createBroker();
  const server = net.createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const url = `mqtt://127.0.0.1:${port}`;

  const { config } = loadOrExit({
    ...process.env,
    MQTT_URL: url,
    LAMP_ID: process.env.LAMP_ID ?? "demo",
    GPIO_DRIVER: "mock",
    HA_DISCOVERY: process.env.HA_DISCOVERY ?? "false",
    STATE_FILE: process.env.STATE_FILE ?? path.join(".lamp-agent", "demo-state.json"),
    LOG_FORMAT: process.env.LOG_FORMAT ?? "text",
  });
  const { topics } = config;
  const lampctl = `node dist/cli/lampctl.js --url ${url} --id ${config.lampId}`;
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
  onSignals(logger, async () => {
    await agent.stop();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    server.close();
  });
  agent.connect();
}

await main();

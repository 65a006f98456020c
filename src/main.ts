// The agent: bundled into dist/agent.js, which dist/main.js (src/start.ts) runs.
// First: it must run before any package reads DEBUG.
import "./debug-guard.js";
import { Agent, StartError } from "./agent.js";
import { parseCommandLine, UsageError } from "./cli/args.js";
import { codeCacheStatus } from "./code-cache.js";
import { ConfigError, type LoadedConfig, loadConfig } from "./config.js";
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, exitOnBugs, onSignals } from "./lifecycle.js";
import { createLogger } from "./log.js";
import { createNotifier } from "./systemd/notify.js";
import { handRunConflict } from "./systemd/service.js";
import { VERSION } from "./version.js";

const HELP = `lamp-agent ${VERSION}: an MQTT agent for a Raspberry Pi LED lamp

Usage: lamp-agent [--check] [--test] [--forget] [--help] [--version]

  (no option)  run in the foreground until SIGTERM or SIGINT
  --check      validate the configuration and hardware access, print the effective
               configuration (secrets masked) and how each pin is driven, with the
               config.txt lines for pins that have no channel; exit 0 when the agent could run
  --test       wiring test: red, green, blue, white for a second each on the real pins,
               then the previous state (through the running agent over MQTT, if there is one)
  --forget     remove every retained message this lamp owns from the broker (its
               Home Assistant light and sensors, info, presence and state), say
               which, then exit; for uninstalling (stop the agent first)
Configuration comes from environment variables and a .env file in the working
directory (without one, an installed /etc/lamp-agent/lamp-agent.env); see
.env.example. Exit codes: 0 ok, 1 failure, 2 invalid configuration.`;

function load(): LoadedConfig {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`lamp-agent: ${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
}

async function forget(loaded: LoadedConfig): Promise<number> {
  const logger = createLogger({ ...loaded.config.log, stream: process.stderr });
  try {
    const { forget: forgetLamp } = await import("./features/forget.js");
    const removed = await forgetLamp(loaded.config, logger);
    for (const { topic, what } of removed) process.stdout.write(`removed ${topic} (${what})\n`);
    if (removed.length === 0)
      process.stdout.write(`nothing retained for lamp ${loaded.config.lampId}: nothing to remove\n`);
    return EXIT_OK;
  } catch (error) {
    process.stderr.write(`lamp-agent: --forget failed: ${(error as Error).message}\n`);
    return EXIT_FAILURE;
  }
}

async function run(loaded: LoadedConfig): Promise<void> {
  const { config } = loaded;
  const conflict = handRunConflict({ env: process.env, driver: config.driver, file: loaded.file });
  if (conflict) {
    process.stderr.write(`lamp-agent: ${conflict}\n`);
    process.exit(EXIT_FAILURE);
  }
  const logger = createLogger(config.log);
  exitOnBugs(logger);
  logger.info(
    { version: VERSION, lampId: config.lampId, node: process.versions.node, codeCache: codeCacheStatus() },
    "lamp-agent starting",
  );
  for (const warning of loaded.warnings) logger.warn(warning);
  const notifier = createNotifier(process.env, logger);
  const agent = new Agent(config, logger, { draw: process.stdout.isTTY ? process.stdout : undefined });
  try {
    await agent.openHardware();
  } catch (error) {
    if (!(error instanceof StartError)) throw error;
    logger.fatal(error.message);
    process.exit(EXIT_FAILURE);
  }
  // After the pins: pigpio installs signal handlers of its own when it initialises, and ours must win.
  onSignals(logger, async () => {
    notifier.stopping();
    try {
      await agent.stop();
    } finally {
      await notifier.close();
    }
  });
  // Ready once the pins are: a lamp must work without its broker.
  notifier.ready(`lamp ${config.lampId} ready`);
  notifier.startWatchdog();
  agent.connect();
}

function options() {
  try {
    const parsed = parseCommandLine({
      options: {
        check: { type: "boolean", default: false },
        test: { type: "boolean", default: false },
        forget: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", short: "v", default: false },
      },
    }).values;
    const modes = (["check", "test", "forget"] as const).filter((mode) => parsed[mode]);
    if (modes.length > 1) {
      throw new UsageError(`${modes.map((mode) => `--${mode}`).join(" and ")} do different things: give one`);
    }
    return parsed;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`lamp-agent: ${error.message} (lamp-agent --help lists the options)\n`);
    process.exit(EXIT_CONFIG);
  }
}

async function main(): Promise<void> {
  const values = options();
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
  } else if (values.version) {
    process.stdout.write(`${VERSION}\n`);
  } else if (values.check) {
    // The one-shot modes load their code when chosen: a running agent never needs it.
    const { check } = await import("./doctor/check.js");
    process.exitCode = await check(load());
  } else if (values.test) {
    const { wiringTest } = await import("./doctor/wiring-test.js");
    process.exitCode = await wiringTest(load().config);
  } else if (values.forget) {
    process.exitCode = await forget(load());
  } else {
    await run(load());
  }
}

// Not a top-level await: the bundle is CommonJS (scripts/build.mjs says why). A rejection still ends
// the process with the error, as an unhandled one does.
void main();

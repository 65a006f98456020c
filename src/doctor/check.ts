import { driverOptions } from "../agent.js";
import type { Config, LoadedConfig } from "../config.js";
import { isRaspberryPi, readBoardModel } from "../drivers/board.js";
import { describeSelection, selectDriver } from "../drivers/index.js";
import { EXIT_FAILURE, EXIT_OK } from "../lifecycle.js";
import type { Logger } from "../log.js";
import { createLogger } from "../log.js";
import { VERSION } from "../version.js";
import { type BrokerReport, brokerReport, lampProblem } from "./broker.js";
import { pinReport } from "./pins.js";

const BROKER_TIMEOUT_MS = 5000;

/**
 * `lamp-agent --check`: the effective configuration, which driver would run and why the others would
 * not, for the kernel's PWM how each pin is driven and what to add to config.txt, and whether the
 * broker takes the lamp (connect, subscribe, a round trip). Exit 0 when the lamp could light and hear
 * commands, 1 when not.
 */
export async function check(
  loaded: LoadedConfig,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const print = (line: string) => out.write(`${line}\n`);
  const { config, effective } = loaded;
  const width = Math.max(...effective.map((s) => s.name.length + s.value.length + 1));
  const from = loaded.file ? `the environment and ${loaded.file}` : "the environment";
  print(`lamp-agent ${VERSION}: effective configuration, from ${from}`);
  for (const setting of effective) {
    print(`  ${`${setting.name}=${setting.value}`.padEnd(width)}  # ${setting.source}`);
  }
  for (const warning of loaded.warnings) print(`warning: ${warning}`);
  const logger = createLogger({ level: "silent", format: "json" });
  const options = driverOptions(config, logger);
  const selection = await selectDriver(config.driver, options);
  for (const { name, availability } of selection.tried) {
    print(`  ${availability.ok ? `${name}: usable` : availability.reason}`);
  }
  // The kernel's PWM is what a Pi without root uses: show its view whenever it is or could be chosen.
  const showPins =
    config.driver === "sysfs-pwm" ||
    (config.driver === "auto" && isRaspberryPi(await readBoardModel(config.sysfsRoot)));
  const pins = showPins ? await pinReport(options) : undefined;
  for (const line of pins?.lines ?? []) print(line);
  const broker = await brokersReport(config, logger);
  let ok = true;
  if (selection.availability.ok) {
    print(`driver: ${describeSelection(selection)}`);
    if (selection.module.name === "sysfs-pwm" && pins && !pins.ok) {
      print("problem: the service user could not drive the pins (see above)");
      ok = false;
    }
  } else {
    print(`problem: ${selection.availability.reason}`);
    ok = false;
  }
  for (const line of broker.lines) print(line);
  if (!ok || !broker.ok) return EXIT_FAILURE;
  print("ok: the agent can run with this configuration");
  return EXIT_OK;
}

/**
 * Every node of MQTT_URL, one after the other: a lamp needs one that answers, and the person running a
 * cluster wants to know which do not. Then what the running lamp says is wrong, from its `info`.
 */
async function brokersReport(config: Config, logger: Logger): Promise<BrokerReport> {
  const { urls } = config.mqtt;
  const reports: BrokerReport[] = [];
  for (const url of urls) reports.push(await brokerReport(config, logger, BROKER_TIMEOUT_MS, url));
  const answering = reports.filter((report) => report.ok).length;
  const lines = reports.flatMap((report, i) =>
    urls.length === 1 || report.ok
      ? report.lines
      : // One node down is a warning while another answers: the lamp fails over to it.
        report.lines.map((line) =>
          answering > 0
            ? line.replace(/^problem: broker:/, `warning: node ${i + 1} of ${urls.length}:`)
            : line,
        ),
  );
  if (urls.length > 1) lines.push(`broker: ${answering} of ${urls.length} nodes answer`);
  const problem = answering > 0 ? await lampProblem(config, logger, BROKER_TIMEOUT_MS) : undefined;
  if (problem) lines.push(`problem: the running lamp says: ${problem}`);
  return { lines, ok: answering > 0 && problem === undefined };
}

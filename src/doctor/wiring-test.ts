import type { MqttClient } from "mqtt";
import { driverOptions } from "../agent.js";
import type { Config } from "../config.js";
import { selectDriver } from "../drivers/index.js";
import { applyCommand, type Command, parseCommand } from "../lamp/command.js";
import { DEFAULT_STATE, type LampState, sameState } from "../lamp/state.js";
import { EXIT_FAILURE, EXIT_OK } from "../lifecycle.js";
import { createLogger } from "../log.js";
import { connectOnce } from "../mqtt/one-shot.js";
import { SERVICE_MARKER, serviceIsRunning } from "../systemd/service.js";
import { doctorTopic, roundTrip } from "./broker.js";

/**
 * `lamp-agent --test`: red, green, blue and white for about a second each on the real pins, then the
 * lamp as it was, so a freshly wired lamp shows in five seconds whether every colour is on its pin.
 *
 * The pins have one owner. When the agent is running (its presence is `1` on the broker) the test asks
 * it over MQTT, like any client, and puts its previous state back afterwards. When it is not, the test
 * drives the pins itself with the driver the agent would use and releases them afterwards. When the
 * service is running but cannot be reached, the test refuses rather than fight it for the pins.
 */

export const TEST_CLIENT = "lamp-agent --test";

interface Step {
  readonly label: string;
  readonly duties: readonly number[];
  readonly command: Command;
}

function stepsFor(pins: readonly number[]): Step[] {
  const full = (h: number, s: number): Command => ({ on: true, color: { h, s }, brightness: 1 });
  if (pins.length === 1) {
    return [
      { label: `on (pin ${pins[0]})`, duties: [1], command: full(0, 0) },
      { label: "off", duties: [0], command: { on: false } },
      { label: `on (pin ${pins[0]})`, duties: [1], command: full(0, 0) },
    ];
  }
  const [r, g, b] = pins;
  return [
    { label: `red (pin ${r})`, duties: [1, 0, 0], command: full(0, 1) },
    { label: `green (pin ${g})`, duties: [0, 1, 0], command: full(1 / 3, 1) },
    { label: `blue (pin ${b})`, duties: [0, 0, 1], command: full(2 / 3, 1) },
    { label: `white (pins ${pins.join(", ")})`, duties: [1, 1, 1], command: full(0, 0) },
  ];
}

export interface WiringTestOptions {
  readonly out: NodeJS.WritableStream;
  /** How long each colour shows. */
  readonly stepMs: number;
  /** How long to wait for the broker and for the agent's answers. */
  readonly timeoutMs: number;
  /** Exists while systemd runs the service (systemd's per-unit invocation link). */
  readonly serviceMarker: string;
}

const DEFAULTS: WiringTestOptions = {
  out: process.stdout,
  stepMs: 1000,
  timeoutMs: 3000,
  serviceMarker: SERVICE_MARKER,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** For races against an answer: unref'd, so a deadline nobody waits for any more does not delay exit. */
const deadline = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

export async function wiringTest(
  config: Config,
  overrides: Partial<WiringTestOptions> = {},
): Promise<number> {
  const options: WiringTestOptions = { ...DEFAULTS, ...overrides };
  const print = (line: string) => options.out.write(`${line}\n`);
  const logger = createLogger({ level: "silent", format: "json" });
  let client: MqttClient | undefined;
  try {
    client = await connectOnce(config.mqtt, logger, "test", options.timeoutMs);
  } catch (error) {
    print(`broker: ${(error as Error).message}`);
  }
  try {
    const agent = client ? await watchAgent(client, config, options.timeoutMs) : undefined;
    if (client && agent?.presence === undefined) {
      print(
        `broker: nothing on ${config.topics.presence}: the agent has never run here, or this user may not read it`,
      );
    }
    if (client && agent?.online) {
      print(`the agent is running (${config.topics.presence} = 1): testing through it over MQTT`);
      return await overMqtt(client, config, agent, options, print);
    }
    if (serviceIsRunning(options.serviceMarker)) {
      print(
        "lamp-agent.service is running and holds the pins, but does not answer on the broker: " +
          "stop it (sudo systemctl stop lamp-agent), run lamp-agent --test, then start it again",
      );
      return EXIT_FAILURE;
    }
    return await direct(config, options, print);
  } finally {
    await client?.endAsync(true).catch(() => undefined);
  }
}

interface AgentView {
  /** The retained presence: "1", "0", or undefined when none came (never ran, or not readable). */
  presence: string | undefined;
  readonly online: boolean;
  state: LampState | undefined;
  /** Resolves when the agent next publishes a state caused by this test. */
  next(): Promise<LampState>;
}

/** Subscribes to the lamp's presence and state; resolves once the retained values had time to arrive. */
async function watchAgent(client: MqttClient, config: Config, timeoutMs: number): Promise<AgentView> {
  const waiters: ((state: LampState) => void)[] = [];
  const view: AgentView = {
    presence: undefined,
    get online() {
      return this.presence === "1";
    },
    state: undefined,
    next: () => new Promise<LampState>((resolve) => waiters.push(resolve)),
  };
  client.on("message", (topic, payload) => {
    if (topic === config.topics.presence) view.presence = payload.toString();
    if (topic !== config.topics.state) return;
    try {
      const command = parseCommand(payload);
      view.state = applyCommand(DEFAULT_STATE, command);
      if (command.client === TEST_CLIENT) for (const resolve of waiters.splice(0)) resolve(view.state);
    } catch {
      // Not a state this test can read; the agent's own errors are its business.
    }
  });
  // QoS 0: retained and live messages to read, nothing to keep; QoS 1 would need a JetStream consumer
  // per filter on NATS, which a cluster with a node down refuses.
  await client.subscribeAsync([config.topics.presence, config.topics.state], { qos: 0 });
  // The retained presence and state follow the SUBACK; after a round trip they have arrived.
  await roundTrip(client, doctorTopic(config), timeoutMs).catch(() => undefined);
  return view;
}

async function overMqtt(
  client: MqttClient,
  config: Config,
  agent: AgentView,
  options: WiringTestOptions,
  print: (line: string) => void,
): Promise<number> {
  const previous = agent.state;
  const send = async (label: string, command: Command): Promise<boolean> => {
    const target = applyCommand(agent.state ?? DEFAULT_STATE, command);
    if (agent.state && sameState(agent.state, target)) return true;
    const answer = agent.next();
    try {
      await client.publishAsync(
        config.topics.command,
        JSON.stringify({ ...command, transition: 0, client: TEST_CLIENT }),
        { qos: 1 },
      );
    } catch (error) {
      // A lamp's own ACL lets it read commands, not send them (docs/security.md).
      print(
        `${label}: the broker refused the command on ${config.topics.command} (${(error as Error).message}): ` +
          "run the test with credentials that may publish there (MQTT_USERNAME, MQTT_PASSWORD)",
      );
      return false;
    }
    const ok = await Promise.race([answer.then(() => true), deadline(options.timeoutMs).then(() => false)]);
    if (!ok) print(`${label}: the agent did not answer within ${options.timeoutMs} ms (see its log)`);
    return ok;
  };
  for (const step of stepsFor(config.pins)) {
    print(step.label);
    if (!(await send(step.label, step.command))) return EXIT_FAILURE;
    await sleep(options.stepMs);
  }
  const back: Command = previous
    ? { on: previous.on, color: previous.color, brightness: previous.brightness }
    : { on: false };
  if (!(await send("restoring", back))) return EXIT_FAILURE;
  print(`restored: ${previous ? JSON.stringify(previous) : "off (the agent had published no state)"}`);
  return EXIT_OK;
}

async function direct(
  config: Config,
  options: WiringTestOptions,
  print: (line: string) => void,
): Promise<number> {
  const logger = createLogger({ level: "silent", format: "json" });
  const selection = await selectDriver(config.driver, driverOptions(config, logger));
  if (!selection.availability.ok) {
    print(`problem: ${selection.availability.reason}`);
    return EXIT_FAILURE;
  }
  print(`the agent is not running: testing the pins with the ${selection.module.name} driver`);
  const driver = selection.module.create(driverOptions(config, logger));
  const steps = stepsFor(config.pins);
  try {
    for (const [i, step] of steps.entries()) {
      print(step.label);
      if (i === 0) await driver.open(step.duties);
      else await driver.write(step.duties);
      await sleep(options.stepMs);
    }
  } catch (error) {
    print(`problem: ${(error as Error).message}`);
    return EXIT_FAILURE;
  } finally {
    await driver.close();
  }
  print("restored: the pins are released, as they were");
  return EXIT_OK;
}

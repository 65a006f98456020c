import type { Config } from "./config.js";
import { readBoardModel } from "./drivers/board.js";
import type { Driver, DriverOptions } from "./drivers/driver.js";
import { describeSelection, selectDriver } from "./drivers/index.js";
import { Control } from "./features/control.js";
import type { Feature } from "./features/feature.js";
import { Groups } from "./features/groups.js";
import { HomeAssistantDiscovery } from "./features/home-assistant.js";
import { FeatureHouse } from "./features/house.js";
import { Info } from "./features/info.js";
import { Presence } from "./features/presence.js";
import { Telemetry } from "./features/telemetry.js";
import { Lamp } from "./lamp/lamp.js";
import { Output } from "./lamp/output.js";
import { DEFAULT_STATE, type LampState } from "./lamp/state.js";
import type { Logger } from "./log.js";
import { type Backoff, MqttConnection } from "./mqtt/connection.js";
import { TopicRouter } from "./mqtt/router.js";
import { StateStore } from "./store.js";
import { VERSION } from "./version.js";

/** A start-up failure that is not the configuration's fault: no usable driver, pins refused. */
export class StartError extends Error {
  override name = "StartError";
}

export interface AgentOptions {
  /** Mock driver only: draw the lamp here (a TTY). */
  readonly draw?: NodeJS.WriteStream | undefined;
  /** Injected driver (tests); otherwise chosen from the config. */
  readonly driver?: Driver;
  /** Reconnect backoff (tests shorten it); otherwise MQTT_RECONNECT_MIN_MS and MQTT_RECONNECT_MAX_MS. */
  readonly backoff?: Backoff;
  /** Where the kernel's wireless statistics are read (`<procRoot>/net/wireless`); tests use a fake. */
  readonly procRoot?: string;
}

/** The driver's share of the configuration; one place, for the agent, `--check` and tests. */
export function driverOptions(config: Config, logger: Logger, draw?: NodeJS.WriteStream): DriverOptions {
  return {
    pins: config.pins,
    activeLow: config.activeLow,
    frequency: config.frequency,
    sysfsRoot: config.sysfsRoot,
    traceFile: config.mockTrace,
    draw,
    logger,
  };
}

function initialState(saved: LampState | undefined, powerOn: Config["powerOn"]): LampState {
  const base = saved ?? DEFAULT_STATE;
  if (powerOn === "restore") return base;
  return { ...base, on: powerOn === "on" };
}

/**
 * Owns every part. Constructors do no I/O; `openHardware()` then `connect()` start them in order, and
 * `stop()` takes them down in reverse, each step on its own so one failure cannot skip the rest.
 */
export class Agent {
  private driver: Driver | undefined;
  private lamp: Lamp | undefined;
  private connection: MqttConnection | undefined;
  private house: FeatureHouse | undefined;
  private board: string | null = null;
  private readonly startedAt = new Date().toISOString();
  private readonly store: StateStore;

  constructor(
    readonly config: Config,
    private readonly logger: Logger,
    private readonly options: AgentOptions = {},
  ) {
    this.store = new StateStore(config.stateFile, logger.child({ part: "store" }));
  }

  get state(): LampState | undefined {
    return this.lamp?.state;
  }

  /** Restores the state and shows it on the pins: the lamp works from here on, broker or not. */
  async openHardware(): Promise<void> {
    const { config } = this;
    this.store.prepare();
    const state = initialState(this.store.load(), config.powerOn);
    if (this.store.corrupt) this.store.save(state);
    const driver = this.options.driver ?? (await this.chooseDriver());
    const output = new Output(driver, { gamma: config.gamma, logger: this.logger.child({ part: "output" }) });
    const lamp = new Lamp(output, config.pins.length === 1 ? 1 : 3, state, config.defaultTransition, (next) =>
      this.store.save(next),
    );
    try {
      await lamp.open();
    } catch (error) {
      throw new StartError(
        `${driver.name}: cannot open pins ${config.pins.join(",")}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    this.driver = driver;
    this.lamp = lamp;
    this.board = await readBoardModel(config.sysfsRoot);
    this.logger.info({ driver: driver.name, pins: config.pins.join(","), state }, "lamp ready");
  }

  /** Connects to the broker and keeps reconnecting until stop(). */
  connect(): void {
    const lamp = this.lamp;
    const driver = this.driver;
    if (!lamp || !driver) throw new Error("openHardware() first");
    const logger = this.logger.child({ part: "mqtt" });
    const connection = new MqttConnection(
      this.config,
      {
        onConnect: (info) => this.house?.onConnect(info),
        onMessage: (topic, payload, packet) => this.house?.onMessage(topic, payload, packet),
      },
      logger,
      this.options.backoff ? { backoff: this.options.backoff } : {},
    );
    this.house = new FeatureHouse(
      this.features(lamp, driver, connection, logger),
      new TopicRouter(connection, logger, { probe: this.config.topics.error }),
      logger,
    );
    this.connection = connection;
    connection.start();
  }

  /** What the lamp does over MQTT, in the order each connect runs them: presence first. */
  private features(lamp: Lamp, driver: Driver, mqtt: MqttConnection, logger: Logger): Feature[] {
    const { config } = this;
    const control = new Control({
      topics: config.topics,
      clientId: config.mqtt.clientId,
      lamp,
      mqtt,
      logger,
    });
    const features: Feature[] = [
      new Presence({ topic: config.topics.presence, mqtt, logger }),
      control,
      new Groups({ groups: config.groups, groupTopicBase: config.groupTopicBase, inbox: control }),
      new Info({
        topic: config.topics.info,
        mqtt,
        logger,
        clientId: config.mqtt.clientId,
        onRival: () => mqtt.rivalSeen(),
        lamp: {
          id: config.lampId,
          name: config.name,
          version: VERSION,
          driver: driver.name,
          pins: config.pins,
          groups: config.groups,
          board: this.board,
          node: process.versions.node,
          started_at: this.startedAt,
          telemetry_interval: config.telemetryInterval,
        },
      }),
      new Telemetry({
        topic: config.topics.telemetry,
        interval: config.telemetryInterval,
        mqtt,
        logger,
        sysfsRoot: config.sysfsRoot,
        procRoot: this.options.procRoot ?? "/proc",
        uptime: () => process.uptime(),
      }),
    ];
    if (config.ha.enabled) {
      features.push(new HomeAssistantDiscovery(config, mqtt, logger.child({ part: "ha" })));
    }
    return features;
  }

  /** The broker connection, once connect() ran. */
  get mqtt(): MqttConnection | undefined {
    return this.connection;
  }

  async stop(): Promise<void> {
    const steps: [string, () => Promise<void>][] = [
      ["features", async () => this.house?.stop()],
      ["mqtt", async () => this.connection?.stop()],
      ["lamp", async () => this.lamp?.close()],
      ["driver", async () => this.driver?.close()],
      ["store", async () => this.store.flush()],
    ];
    for (const [part, step] of steps) {
      try {
        await step();
      } catch (error) {
        this.logger.error({ part, err: error }, "error while stopping");
      }
    }
    this.logger.info("stopped");
  }

  private async chooseDriver(): Promise<Driver> {
    const { config } = this;
    const options = driverOptions(config, this.logger.child({ part: "driver" }), this.options.draw);
    const selection = await selectDriver(config.driver, options);
    for (const { name, availability } of selection.tried) {
      this.logger.debug({ driver: name, ...availability }, "driver probe");
    }
    if (!selection.availability.ok) throw new StartError(selection.availability.reason);
    if (config.driver === "auto") {
      const line = describeSelection(selection);
      if (selection.module.name === "mock")
        this.logger.warn({ driver: "mock" }, `no GPIO hardware found: ${line}`);
      else this.logger.info({ driver: selection.module.name }, `driver chosen automatically: ${line}`);
    }
    return selection.module.create(options);
  }
}

import { type SampleSources, sample } from "../diagnostics/sample.js";
import type { Logger } from "../log.js";
import { describeMqttError } from "../mqtt/errors.js";
import type { TelemetryMessage } from "../protocol/payloads.js";
import type { ConnectInfo, Feature, MqttPort } from "./feature.js";

export interface TelemetryContext extends SampleSources {
  readonly topic: string;
  /** Seconds between messages; 0 = none. */
  readonly interval: number;
  readonly mqtt: MqttPort;
  readonly logger: Logger;
}

/**
 * `<base>/telemetry` (CONTRACT section 14): how the lamp is doing, QoS 0 and not retained, once the lamp
 * listens and then every `interval` seconds while connected. A stale figure is worse than none, so
 * nothing is kept for a broker that is away: the timer stops at a lost connection (the next connect
 * says so) and starts again once the lamp is back online. Its arrival is also what tells `lampctl ls`
 * a lamp is alive when a cluster never publishes its Will.
 */
export class Telemetry implements Feature {
  readonly name = "telemetry";
  readonly filters = [];
  private timer: NodeJS.Timeout | undefined;
  /** Connects after the first, as the connection counts them. */
  reconnects = 0;

  constructor(private readonly context: TelemetryContext) {}

  connected(info: ConnectInfo): void {
    this.reconnects = info.reconnects;
    this.halt();
  }

  online(): void {
    const { interval } = this.context;
    if (interval <= 0) return;
    this.halt();
    this.publish();
    this.timer = setInterval(() => this.publish(), interval * 1000);
    // Never what keeps the process alive.
    this.timer.unref();
  }

  stop(): void {
    this.halt();
  }

  private halt(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private publish(): void {
    const { mqtt, topic, logger } = this.context;
    if (!mqtt.connected) return;
    const { uptime_s, ...readings } = sample(this.context);
    const message: TelemetryMessage = { uptime_s, reconnects: this.reconnects, ...readings };
    mqtt.publish(topic, JSON.stringify(message), { qos: 0, retain: false }).catch((error: unknown) => {
      if (mqtt.connected)
        logger.debug({ topic, cause: describeMqttError(error) }, "could not publish the telemetry");
    });
  }
}

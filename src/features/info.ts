import type { Logger } from "../log.js";
import { protocolName } from "../mqtt/client-options.js";
import { describeMqttError } from "../mqtt/errors.js";
import type { InfoMessage } from "../protocol/payloads.js";
import type { ConnectInfo, Feature, MqttPort } from "./feature.js";

export interface InfoContext {
  readonly topic: string;
  readonly mqtt: MqttPort;
  readonly logger: Logger;
  /** What the lamp is, fixed for the life of the process. */
  readonly lamp: Omit<InfoMessage, "broker" | "mqtt" | "problem">;
  /** The client id: named in the problem when another client takes it over. */
  readonly clientId: string;
}

/**
 * `<base>/info` (CONTRACT section 14): what a lamp is, retained, so a fresh subscriber reads the whole
 * fleet at once, as zigbee2mqtt's `bridge/info`. Published once the lamp listens after every connect:
 * the broker node and the protocol, part of it, may change with each one.
 */
export class Info implements Feature {
  readonly name = "info";
  readonly filters = [];
  private link: Pick<InfoMessage, "broker" | "mqtt" | "problem"> | undefined;

  constructor(private readonly context: InfoContext) {}

  connected(info: ConnectInfo): void {
    this.link = {
      broker: info.node,
      mqtt: protocolName(info.protocol),
      // Said where the fleet and `--check` read it, not only in this Pi's log.
      ...(info.takenOver && {
        problem: `another client connected with this lamp's client id (${this.context.clientId}) and took its session over: two Pis given one LAMP_ID? Give each its own LAMP_ID (or MQTT_CLIENT_ID)`,
      }),
    };
  }

  online(): void {
    const { mqtt, topic, logger, lamp } = this.context;
    if (!this.link || !mqtt.connected) return;
    const payload = JSON.stringify({ ...lamp, ...this.link } satisfies InfoMessage);
    // Every time, not only when it changed: a broker without persistence forgets what it retained.
    mqtt.publish(topic, payload, { qos: 1, retain: true }).catch((error: unknown) => {
      if (mqtt.connected)
        logger.warn({ topic, cause: describeMqttError(error) }, "could not publish the info");
    });
  }
}

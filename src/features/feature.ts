import type { IPublishPacket } from "mqtt";
import type { ConnectInfo, PublishOptions } from "../mqtt/connection.js";

export type { ConnectInfo };

/** What a feature may do on the connection: publish, and know whether it can. */
export interface MqttPort {
  readonly connected: boolean;
  publish(topic: string, payload: string, options: PublishOptions): Promise<void>;
  /** publish(), calling `done` inside the broker's acknowledgement rather than a tick later. */
  publishThen(
    topic: string,
    payload: string,
    options: PublishOptions,
    done: (error?: Error | null) => void,
  ): void;
}

/** A subscription a feature asks the router for. */
export interface TopicFilter {
  readonly filter: string;
  /** MQTT 5 No Local; false only where the broker publishes in our name (the Will). Default true. */
  readonly noLocal?: boolean;
}

/**
 * Something the lamp does over MQTT (its commands, its presence, Home Assistant...). Each feature names
 * the filters it wants and is told about connects and its messages; the house (features/house.ts) calls
 * them in the order they were given, and stops them in reverse. Constructors do no I/O.
 */
export interface Feature {
  readonly name: string;
  readonly filters: readonly TopicFilter[];
  /** Right after every CONNACK, before any subscription is granted or anything published. */
  connected?(info: ConnectInfo): void;
  /** Once the lamp listens (its subscriptions in place) and its presence `1` is out. */
  online?(): void;
  /**
   * `online` in the very turn the lamp starts to listen: presence and the state. Every other feature's
   * `online` runs a turn of the event loop later, so `1` and the state leave in a packet of their own,
   * not behind the info, telemetry and discovery configs (5 kB at a new lamp's start).
   */
  readonly urgent?: boolean;
  /** A message on one of `filters`. */
  message?(topic: string, payload: Buffer, packet: IPublishPacket): void;
  /** A clean stop, while still connected; each feature's stop is bounded by itself. */
  stop?(): Promise<void> | void;
}

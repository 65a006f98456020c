import type { PublishOptions } from "../../src/mqtt/connection.js";

/** One publish, as a feature made it. */
export interface Sent {
  readonly topic: string;
  readonly payload: string;
  readonly options: PublishOptions;
}

/**
 * The part of MqttConnection the features and the router use (MqttPort, Subscriber), for unit tests.
 * Every publish and subscription is recorded. Publishes are acknowledged and subscriptions granted at
 * once, or, when held, only as `ack()` and `grant()` say; a publish while not `connected` is refused, as
 * MQTT.js refuses it.
 */
export class FakeConnection {
  connected = true;
  readonly sent: Sent[] = [];
  readonly subscribed: string[] = [];
  readonly unsubscribed: string[] = [];
  private readonly acks: (() => void)[] = [];
  private readonly grants: (() => void)[] = [];

  constructor(private readonly hold: { readonly acks?: boolean; readonly grants?: boolean } = {}) {}

  publishThen(topic: string, payload: string, options: PublishOptions, done: (error?: Error) => void): void {
    this.publish(topic, payload, options).then(() => done(), done);
  }

  publish(topic: string, payload: string, options: PublishOptions): Promise<void> {
    if (!this.connected) return Promise.reject(new Error("not connected"));
    this.sent.push({ topic, payload, options });
    if (!this.hold.acks) return Promise.resolve();
    return new Promise((resolve) => this.acks.push(resolve));
  }

  subscribe(filter: string, _options?: { readonly noLocal?: boolean }): Promise<void> {
    this.subscribed.push(filter);
    if (!this.hold.grants) return Promise.resolve();
    return new Promise((resolve) => this.grants.push(resolve));
  }

  unsubscribe(filter: string): Promise<void> {
    this.unsubscribed.push(filter);
    return Promise.resolve();
  }

  /** Grants every subscription held so far. */
  grant(): void {
    for (const resolve of this.grants.splice(0)) resolve();
  }

  /** Acknowledges every publish held so far, and lets the callers' continuations run. */
  async ack(): Promise<void> {
    for (const resolve of this.acks.splice(0)) resolve();
    await Promise.resolve();
  }

  /** What was published on `topic`, oldest first. */
  on(topic: string): Sent[] {
    return this.sent.filter((s) => s.topic === topic);
  }
}

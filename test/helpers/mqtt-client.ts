import mqtt, { type IClientOptions, type MqttClient } from "mqtt";

export interface Received {
  readonly topic: string;
  readonly text: string;
  readonly retain: boolean;
  readonly at: number;
}

/** A test client that records every message, so tests can wait for one or assert on the whole log. */
export class Recorder {
  readonly messages: Received[] = [];
  private waiters: { match: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];

  private constructor(readonly client: MqttClient) {
    client.on("message", (topic, payload, packet) => {
      const message = { topic, text: payload.toString(), retain: packet.retain, at: Date.now() };
      this.messages.push(message);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(message)) return true;
        w.resolve(message);
        return false;
      });
    });
  }

  static async connect(url: string, topics: string[], options: IClientOptions = {}): Promise<Recorder> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
    const recorder = new Recorder(client);
    if (topics.length > 0) await client.subscribeAsync(topics, { qos: 1 });
    return recorder;
  }

  on(topic: string): Received[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  /** The first message (already received or still to come) on `topic` that `match` accepts. */
  wait(topic: string, match: (text: string) => boolean = () => true, timeoutMs = 10_000): Promise<Received> {
    const accept = (m: Received) => m.topic === topic && match(m.text);
    const seen = this.messages.find(accept);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const got = this.on(topic).map((m) => m.text);
        reject(
          new Error(`no matching message on ${topic} within ${timeoutMs} ms; got ${JSON.stringify(got)}`),
        );
      }, timeoutMs);
      this.waiters.push({
        match: accept,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** Like wait(), but only for messages arriving after this call. */
  next(topic: string, match: (text: string) => boolean = () => true, timeoutMs = 10_000): Promise<Received> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no new message on ${topic} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        match: (m) => m.topic === topic && match(m.text),
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  clear(): void {
    this.messages.length = 0;
  }

  async publish(topic: string, payload: string | Buffer, options: { qos?: 0 | 1; retain?: boolean } = {}) {
    await this.client.publishAsync(topic, payload, {
      qos: options.qos ?? 1,
      retain: options.retain ?? false,
    });
  }

  async end(): Promise<void> {
    // A client that is not connected now would wait for its unacknowledged messages for ever.
    await this.client.endAsync(!this.client.connected);
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

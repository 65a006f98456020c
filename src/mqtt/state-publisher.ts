import type { Logger } from "../log.js";
import { describeMqttError, type MqttConnection } from "./connection.js";

/**
 * Publishes state retained at QoS 1 with at most one publish in flight: whatever changes while one is
 * being acknowledged collapses into the newest. So a dragged slider costs a handful of messages, the
 * last state is always published, and nothing queues up behind a slow broker.
 */
export class StatePublisher {
  private latest: string | undefined;
  private inFlight = false;
  private generation = 0;

  constructor(
    private readonly connection: Pick<MqttConnection, "publishThen" | "connected">,
    private readonly topic: string,
    private readonly logger: Logger,
    /** Told about every payload actually sent (the feedback guard's echo ledger). */
    private readonly onSend: (payload: string) => void,
  ) {}

  publish(payload: string): void {
    this.latest = payload;
    if (!this.inFlight) this.send();
  }

  /**
   * After a reconnect a publish from the old connection may never be acknowledged; forget it so the
   * fresh state is not stuck behind it.
   */
  reset(): void {
    this.generation++;
    this.inFlight = false;
    this.latest = undefined;
  }

  private send(): void {
    const payload = this.latest;
    if (payload === undefined || !this.connection.connected) return;
    this.latest = undefined;
    this.inFlight = true;
    const generation = this.generation;
    this.onSend(payload);
    this.connection.publishThen(this.topic, payload, { qos: 1, retain: true }, (error) => {
      if (error) {
        this.logger.warn(
          { topic: this.topic, cause: describeMqttError(error) },
          "could not publish the state",
        );
      }
      if (generation !== this.generation) return;
      this.inFlight = false;
      this.send();
    });
  }
}

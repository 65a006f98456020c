import type { IPublishPacket } from "mqtt";
import type { Config } from "../config.js";
import { type Command, CommandError, parseCommand, senderOf } from "../lamp/command.js";
import type { Lamp } from "../lamp/lamp.js";
import type { LampState } from "../lamp/state.js";
import type { Logger } from "../log.js";
import { describeMqttError, type MqttConnection } from "./connection.js";
import { FeedbackGuard } from "./guard.js";
import { RateLimiter } from "./rate-limit.js";
import { StatePublisher } from "./state-publisher.js";

/** A reconnect backlog is over once no command arrived for this long (or BACKLOG_MAX_MS passed). */
const BACKLOG_QUIET_MS = 100;
const BACKLOG_MAX_MS = 2000;

/** At most one "state changed" line per this interval; see noteChange(). */
const CHANGE_LOG_MS = 500;

/** Something else that lives on the same connection (Home Assistant discovery, say). */
export interface LinkExtension {
  /** Topics to subscribe to after every connect. */
  readonly topics: readonly string[];
  /** After presence and state went out on a (re)connect. */
  onConnect(): void;
  /** A message on one of `topics`. */
  onMessage(topic: string, payload: Buffer): void;
}

export function statePayload(state: LampState, client: string | null): string {
  return JSON.stringify({ on: state.on, color: state.color, brightness: state.brightness, client });
}

/**
 * The lamp on MQTT. Data flows one way: message -> guard -> parser -> lamp, and lamp state -> MQTT.
 */
export class LampLink {
  private readonly guard: FeedbackGuard;
  private readonly errors = new RateLimiter(10, 2);
  private readonly publisher: StatePublisher;
  private readonly extensions: LinkExtension[] = [];
  private backlogTimer: NodeJS.Timeout | undefined;
  private backlogEnds = 0;
  private changeTimer: NodeJS.Timeout | undefined;
  private unlogged: { state: LampState; client: string | null; changes: number } | undefined;

  constructor(
    private readonly config: Config,
    private readonly lamp: Lamp,
    private readonly connection: MqttConnection,
    private readonly logger: Logger,
  ) {
    const { topics } = config;
    this.guard = new FeedbackGuard(config.mqtt.clientId, topics.command === topics.state);
    this.publisher = new StatePublisher(connection, topics.state, logger, (payload) =>
      this.guard.published(payload),
    );
  }

  addExtension(extension: LinkExtension): void {
    this.extensions.push(extension);
  }

  /** Every (re)connect: presence first, then the command subscription, then the whole state. */
  onConnect(): void {
    const { topics } = this.config;
    // Commands queued in our session while we were away arrive now; commands are absolute, so the pins
    // go straight to the last one instead of flashing through them all.
    this.lamp.hold();
    this.backlogEnds = Date.now() + BACKLOG_MAX_MS;
    this.armBacklogRelease();
    this.connection
      .publish(topics.presence, "1", { qos: 1, retain: true })
      .catch((error: unknown) => this.refused("publish", topics.presence, error));
    for (const topic of [topics.command, ...this.extensions.flatMap((e) => e.topics)]) {
      this.connection.subscribe(topic).catch((error: unknown) => this.refused("subscribe", topic, error));
    }
    this.publisher.reset();
    this.publisher.publish(statePayload(this.lamp.state, this.config.mqtt.clientId));
    for (const extension of this.extensions) extension.onConnect();
  }

  onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (topic !== this.config.topics.command) {
      for (const extension of this.extensions) {
        if (extension.topics.includes(topic)) extension.onMessage(topic, payload);
      }
      return;
    }
    if (this.backlogTimer) this.armBacklogRelease();
    if (this.guard.isOwnEcho(payload)) {
      this.logger.trace("ignored the echo of our own state");
      return;
    }
    // An empty message is how a user clears a retained command: nothing to do, nothing to report.
    if (payload.length === 0) return;
    // The retain flag means "replayed from the broker's store at (re)subscribe": on MQTT 5 we subscribe
    // without Retain As Published, and a 3.1.1 broker sets it only on such replays. A live command is
    // obeyed whatever flag its sender used (LAMPI's clients publish set_config retained); a replay is
    // not, or it would switch the lamp on at every reconnect and undo any newer command (Tasmota #744).
    if (packet.retain) {
      // With one topic for commands and state, the retained message found there on subscribe is our
      // own last state, not a command anyone sent.
      if (this.config.topics.command === this.config.topics.state) return;
      this.reportError(
        new CommandError(
          "retained_command",
          `ignored the retained command stored on ${topic}, replayed at subscribe (it may be older than the lamp's state); clear it with an empty retained message: mosquitto_pub -r -n -t '${topic}'`,
          senderOf(payload),
        ),
      );
      return;
    }
    let command: Command;
    try {
      command = parseCommand(payload);
    } catch (error) {
      if (error instanceof CommandError) this.reportError(error);
      else this.logger.error({ err: error }, "unexpected error parsing a command");
      return;
    }
    if (this.guard.isOwnClient(command.client)) {
      this.logger.trace("ignored a command naming us as its client");
      return;
    }
    const state = this.lamp.apply(command);
    if (!state) {
      this.logger.debug({ client: command.client }, "command changes nothing");
      return;
    }
    const client = command.client ?? null;
    this.publisher.publish(statePayload(state, client));
    this.noteChange(state, client);
  }

  /**
   * State changes are logged at info as they come, but at most one line per CHANGE_LOG_MS: a dragged
   * slider sends hundreds of commands a second, and a line for each took 40% of the agent's CPU in a
   * burst (bench/run.mjs) and would flood the journal, which rate-limits a unit and then drops its
   * errors. The line after a busy interval carries the newest state and how many changes it stands for.
   */
  private noteChange(state: LampState, client: string | null): void {
    if (this.changeTimer) {
      this.unlogged = { state, client, changes: (this.unlogged?.changes ?? 0) + 1 };
      return;
    }
    this.startChangeInterval();
    // Off the round trip: the state packet goes out first.
    setImmediate(() => this.logChange(state, client, 1));
  }

  private startChangeInterval(): void {
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      if (this.flushChangeLog()) this.startChangeInterval();
    }, CHANGE_LOG_MS);
    this.changeTimer.unref();
  }

  /** Logs the change held back in this interval, if any; true when there was one. */
  private flushChangeLog(): boolean {
    const pending = this.unlogged;
    this.unlogged = undefined;
    if (pending) this.logChange(pending.state, pending.client, pending.changes);
    return pending !== undefined;
  }

  private logChange(state: LampState, client: string | null, changes: number): void {
    this.logger.info({ client, ...flat(state), ...(changes > 1 && { changes }) }, "state changed");
  }

  private armBacklogRelease(): void {
    clearTimeout(this.backlogTimer);
    const wait = Math.max(0, Math.min(BACKLOG_QUIET_MS, this.backlogEnds - Date.now()));
    this.backlogTimer = setTimeout(() => {
      this.backlogTimer = undefined;
      this.lamp.release();
    }, wait);
  }

  /** Publishes `0` retained, stamped with the time, and waits for the broker to acknowledge it, bounded. */
  async goOffline(timeoutMs = 2000): Promise<void> {
    clearTimeout(this.changeTimer);
    this.flushChangeLog();
    clearTimeout(this.backlogTimer);
    this.lamp.release();
    if (!this.connection.connected) return;
    // When it went offline, for `lampctl` to show beside the stale state (the Will cannot know).
    const acknowledged = this.connection.publish(this.config.topics.presence, "0", {
      qos: 1,
      retain: true,
      userProperties: { since: new Date().toISOString() },
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const result = await Promise.race([acknowledged, timeout]);
      if (result === "timeout") this.logger.warn("the broker did not acknowledge presence 0 in time");
    } catch (error) {
      this.logger.warn({ cause: describeMqttError(error) }, "could not publish presence 0");
    } finally {
      clearTimeout(timer);
    }
  }

  private reportError(error: CommandError): void {
    if (!this.errors.take()) return;
    const suppressed = this.errors.suppressed;
    this.errors.suppressed = 0;
    // How many were held back, only when some were: `suppressed=0` on every line is noise.
    this.logger.warn(
      { code: error.code, client: error.client, ...(suppressed > 0 && { suppressed }) },
      `rejected a command: ${error.message}`,
    );
    const body = JSON.stringify({ error: error.code, message: error.message, client: error.client });
    if (!this.connection.connected) return;
    this.connection.publish(this.config.topics.error, body, { qos: 0, retain: false }).catch(() => undefined);
  }

  private refused(action: "publish" | "subscribe", topic: string, error: unknown): void {
    // A call cut short by a lost connection is not a refusal; the next connect does it again.
    if (!this.connection.connected) return;
    this.logger.error(
      { topic, cause: describeMqttError(error) },
      `the broker refused to let us ${action} (check its ACL for this client)`,
    );
  }
}

function flat(state: LampState): Record<string, unknown> {
  return { on: state.on, h: state.color.h, s: state.color.s, brightness: state.brightness };
}

import type { IPublishPacket } from "mqtt";
import { type Command, CommandError, parseCommand, senderOf } from "../lamp/command.js";
import type { Lamp } from "../lamp/lamp.js";
import type { LampState } from "../lamp/state.js";
import type { Logger } from "../log.js";
import { describeMqttError } from "../mqtt/errors.js";
import { FeedbackGuard } from "../mqtt/guard.js";
import { RateLimiter } from "../mqtt/rate-limit.js";
import { StatePublisher } from "../mqtt/state-publisher.js";
import { errorPayload, statePayload } from "../protocol/payloads.js";
import type { Feature, MqttPort } from "./feature.js";

/** A reconnect backlog is over once no command arrived for this long (or BACKLOG_MAX_MS passed). */
const BACKLOG_QUIET_MS = 100;
const BACKLOG_MAX_MS = 2000;

/** At most one "state changed" line per this interval; see noteChange(). */
const CHANGE_LOG_MS = 500;

export interface ControlContext {
  readonly topics: { readonly command: string; readonly state: string; readonly error: string };
  /** The agent's own client id: commands naming it are its own (the LAMPI convention). */
  readonly clientId: string;
  readonly lamp: Pick<Lamp, "state" | "apply" | "hold" | "release">;
  readonly mqtt: MqttPort;
  readonly logger: Logger;
}

/** Where commands from other topics (a group's) join the lamp's own command path. */
export interface CommandInbox {
  command(topic: string, payload: Buffer, packet: IPublishPacket): void;
}

/**
 * The lamp's commands and state (CONTRACT sections 3 to 6). Data flows one way: message -> guard ->
 * parser -> lamp, and lamp state -> MQTT. Every command topic (the lamp's own, its groups') goes
 * through `command()`, so every rule holds on each.
 */
export class Control implements Feature, CommandInbox {
  readonly name = "control";
  readonly urgent = true;
  readonly filters;
  private readonly guard: FeedbackGuard;
  private readonly errors = new RateLimiter(10, 2);
  private readonly publisher: StatePublisher;
  private backlogTimer: NodeJS.Timeout | undefined;
  private backlogEnds = 0;
  private changeTimer: NodeJS.Timeout | undefined;
  /** When the last "state changed" line was written (Date.now()). */
  private loggedAt = Number.NEGATIVE_INFINITY;
  private unlogged: { state: LampState; client: string | null; changes: number } | undefined;

  constructor(private readonly context: ControlContext) {
    const { topics, clientId, mqtt, logger } = context;
    this.filters = [{ filter: topics.command }];
    this.guard = new FeedbackGuard(clientId, topics.command === topics.state);
    this.publisher = new StatePublisher(mqtt, topics.state, logger, (payload) =>
      this.guard.published(payload),
    );
  }

  /** Commands queued in our session while we were away arrive now. */
  connected(): void {
    // Commands are absolute, so the pins go straight to the last one instead of flashing through them all.
    this.context.lamp.hold();
    this.backlogEnds = Date.now() + BACKLOG_MAX_MS;
    this.armBacklogRelease();
    this.publisher.reset();
  }

  /** The whole state, in the agent's own name, once after every connect. */
  online(): void {
    this.publisher.publish(statePayload(this.context.lamp.state, this.context.clientId));
  }

  message(topic: string, payload: Buffer, packet: IPublishPacket): void {
    this.command(topic, payload, packet);
  }

  command(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const { topics, lamp, logger } = this.context;
    if (this.backlogTimer) this.armBacklogRelease();
    // Our own state comes back only where state and commands share a topic.
    if (topic === topics.state && this.guard.isOwnEcho(payload)) {
      logger.trace("ignored the echo of our own state");
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
      if (topic === topics.state) return;
      this.reportError(
        new CommandError(
          "retained_command",
          `ignored the retained command stored on ${topic}, replayed at subscribe (it may be older than the lamp's state); clear it with an empty retained message: mosquitto_pub -h <host> -p <port> -r -n -t '${topic}'`,
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
      else logger.error({ err: error }, "unexpected error parsing a command");
      return;
    }
    if (this.guard.isOwnClient(command.client)) {
      logger.trace("ignored a command naming us as its client");
      return;
    }
    const state = lamp.apply(command);
    if (!state) {
      logger.debug({ client: command.client }, "command changes nothing");
      return;
    }
    const client = command.client ?? null;
    this.publisher.publish(statePayload(state, client));
    this.noteChange(state, client);
  }

  stop(): void {
    clearTimeout(this.changeTimer);
    this.changeTimer = undefined;
    this.flushChangeLog();
    clearTimeout(this.backlogTimer);
    this.backlogTimer = undefined;
    this.context.lamp.release();
  }

  /**
   * State changes are logged at info as they come, but at most one line per CHANGE_LOG_MS: a dragged
   * slider sends hundreds of commands a second, and a line for each took 40% of the agent's CPU in a
   * burst (bench/run.mjs) and would flood the journal, which rate-limits a unit and then drops its
   * errors. The line after a busy interval carries the newest state and how many changes it stands for.
   */
  private noteChange(state: LampState, client: string | null): void {
    const held = this.unlogged;
    if (this.changeTimer) {
      // Within a busy interval: the line at its end carries this state (one object per interval, not
      // one per command).
      if (held) {
        held.state = state;
        held.client = client;
        held.changes++;
      } else this.unlogged = { state, client, changes: 1 };
      return;
    }
    const now = Date.now();
    const wait = this.loggedAt + CHANGE_LOG_MS - now;
    if (wait <= 0) {
      // A change after a quiet interval: logged now, and no timer armed for it (a command a second
      // would otherwise wake the loop twice).
      this.loggedAt = now;
      // Off the round trip: the state packet goes out first.
      setImmediate(() => this.logChange(state, client, 1));
      return;
    }
    this.unlogged = { state, client, changes: (held?.changes ?? 0) + 1 };
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      this.flushChangeLog();
    }, wait);
    this.changeTimer.unref();
  }

  /** Logs the change held back in this interval, if any. */
  private flushChangeLog(): void {
    const pending = this.unlogged;
    this.unlogged = undefined;
    if (!pending) return;
    this.loggedAt = Date.now();
    this.logChange(pending.state, pending.client, pending.changes);
  }

  private logChange(state: LampState, client: string | null, changes: number): void {
    this.context.logger.info({ client, ...flat(state), ...(changes > 1 && { changes }) }, "state changed");
  }

  private armBacklogRelease(): void {
    clearTimeout(this.backlogTimer);
    const wait = Math.max(0, Math.min(BACKLOG_QUIET_MS, this.backlogEnds - Date.now()));
    this.backlogTimer = setTimeout(() => {
      this.backlogTimer = undefined;
      this.context.lamp.release();
    }, wait);
  }

  private reportError(error: CommandError): void {
    if (!this.errors.take()) return;
    const suppressed = this.errors.suppressed;
    this.errors.suppressed = 0;
    const { mqtt, topics, logger } = this.context;
    // How many were held back, only when some were: `suppressed=0` on every line is noise.
    logger.warn(
      { code: error.code, client: error.client, ...(suppressed > 0 && { suppressed }) },
      `rejected a command: ${error.message}`,
    );
    if (!mqtt.connected) return;
    const body = errorPayload({ error: error.code, message: error.message, client: error.client });
    mqtt.publish(topics.error, body, { qos: 0, retain: false }).catch((cause: unknown) => {
      logger.debug({ cause: describeMqttError(cause) }, "could not publish an error");
    });
  }
}

function flat(state: LampState): Record<string, unknown> {
  return { on: state.on, h: state.color.h, s: state.color.s, brightness: state.brightness };
}

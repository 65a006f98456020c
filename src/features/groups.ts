import type { IPublishPacket } from "mqtt";
import { groupCommandTopic } from "../protocol/topics.js";
import type { CommandInbox } from "./control.js";
import type { Feature } from "./feature.js";

export interface GroupsContext {
  readonly groups: readonly string[];
  readonly groupTopicBase: string;
  /** The lamp's own command path: every rule of a command holds for a group's too. */
  readonly inbox: CommandInbox;
}

/**
 * `<GROUP_TOPIC_BASE>/<group>/set_config` for every group in LAMP_GROUPS (CONTRACT section 13): one
 * message switches a room, or with the default group `all`, every lamp on the broker, as Tasmota's
 * group topic does. Each lamp answers on its own `changed` and `error` topics.
 */
export class Groups implements Feature {
  readonly name = "groups";
  readonly filters;

  constructor(private readonly context: GroupsContext) {
    this.filters = context.groups.map((group) => ({
      filter: groupCommandTopic(context.groupTopicBase, group),
    }));
  }

  message(topic: string, payload: Buffer, packet: IPublishPacket): void {
    this.context.inbox.command(topic, payload, packet);
  }
}

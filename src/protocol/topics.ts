/**
 * The topic scheme, one place for the agent and `lampctl`: LAMPI's `lamp/<id>/set_config` and
 * `lamp/<id>/changed`, the presence topic `state/<id>`, and what lamp-agent adds beside them.
 */

/** Where a lamp's own topics live unless TOPIC_BASE says otherwise. */
export function defaultTopicBase(lampId: string): string {
  return `lamp/${lampId}`;
}

export function defaultPresenceTopic(lampId: string): string {
  return `state/${lampId}`;
}

export const DEFAULT_GROUP_TOPIC_BASE = "lamp/group";

/** Every group a lamp is in unless LAMP_GROUPS says otherwise: one message switches the whole fleet. */
export const DEFAULT_GROUPS: readonly string[] = ["all"];

/** What a lamp id and a group name may be: one topic level, no wildcard. */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const commandTopic = (base: string) => `${base}/set_config`;
export const stateTopic = (base: string) => `${base}/changed`;
export const errorTopic = (base: string) => `${base}/error`;
export const infoTopic = (base: string) => `${base}/info`;
export const telemetryTopic = (base: string) => `${base}/telemetry`;

/** A group's command topic: `<GROUP_TOPIC_BASE>/<group>/set_config`. */
export function groupCommandTopic(groupBase: string, group: string): string {
  return `${groupBase}/${group}/set_config`;
}

/**
 * The default scheme seen from above, for the fleet view: one subscription per kind of message. A lamp
 * with its own TOPIC_BASE or PRESENCE_TOPIC is outside it (and outside `lampctl ls`).
 */
export const FLEET_FILTERS = {
  presence: defaultPresenceTopic("+"),
  state: stateTopic(defaultTopicBase("+")),
  info: infoTopic(defaultTopicBase("+")),
  telemetry: telemetryTopic(defaultTopicBase("+")),
} as const;

/** The lamp id in a topic of the default scheme (`lamp/<id>/changed`, `state/<id>`), else undefined. */
export function lampIdOf(topic: string): string | undefined {
  const levels = topic.split("/");
  if (levels.length === 2 && levels[0] === "state") return levels[1];
  if (levels.length === 3 && levels[0] === "lamp") return levels[1];
  return undefined;
}

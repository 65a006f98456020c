import type { Config } from "../config.js";
import { MAX_TRANSITION_S } from "../lamp/command-scan.js";
import type { Logger } from "../log.js";
import { describeMqttError } from "../mqtt/errors.js";
import { RateLimiter } from "../mqtt/rate-limit.js";
import { VERSION } from "../version.js";
import type { Feature, MqttPort } from "./feature.js";

/** Who the commands Home Assistant sends say they are from: the LAMPI echo convention needs a name. */
export const HA_CLIENT = "home-assistant";

/*
 * Home Assistant's MQTT light, template schema (https://www.home-assistant.io/integrations/light.mqtt/).
 * HA renders command templates with `state`, `brightness` (0..255), `hue` (0..360), `sat` (0..100),
 * `red`/`green`/`blue` and `transition`, each defined only when the user set it; it reads the state
 * back through `state_template` ("on"/"off"), `brightness_template` (0..255) and the three
 * `*_template`s for red, green and blue (0..255), which it turns into hs colour itself. There is no hue
 * or saturation state template in this schema, so the state side computes the fully bright RGB of the
 * lamp's h/s (brightness is reported on its own). Every template here is plain Jinja that nunjucks
 * renders identically, which is how the tests check them.
 */

/** HA allows transitions beyond what the agent accepts; clamp instead of having the command refused. */
const TRANSITION = `{% if transition is defined %}, "transition": {{ transition if transition <= ${MAX_TRANSITION_S} else ${MAX_TRANSITION_S} }}{% endif %}`;
const CLIENT = `, "client": "${HA_CLIENT}"`;

const COMMAND_ON_RGB =
  `{"on": true` +
  `{% if brightness is defined %}, "brightness": {{ (brightness / 255) | round(2) }}{% endif %}` +
  `{% if hue is defined and sat is defined %}, "color": {"h": {{ (hue / 360) | round(2) }}, "s": {{ (sat / 100) | round(2) }}}{% endif %}` +
  `${TRANSITION}${CLIENT}}`;
const COMMAND_ON_MONO =
  `{"on": true` +
  `{% if brightness is defined %}, "brightness": {{ (brightness / 255) | round(2) }}{% endif %}` +
  `${TRANSITION}${CLIENT}}`;
const COMMAND_OFF = `{"on": false${TRANSITION}${CLIENT}}`;
const STATE = `{{ 'on' if value_json.on else 'off' }}`;
const BRIGHTNESS = `{{ (value_json.brightness * 255) | round(0) | int }}`;

/**
 * One channel of HSV -> RGB at full value, LAMPI's colour wheel (h and s in 0..1, hue 1 wraps to red).
 * `pick` lists the channel's value in each of the six hue sectors, written with p = 1-s, q = 1-f*s and
 * t = 1-(1-f)*s, the textbook names.
 */
function channel(pick: string): string {
  return (
    `{% set h6 = value_json.color.h * 6 %}{% set i = h6 | int %}{% set f = h6 - i %}` +
    `{% set s = value_json.color.s %}{% set p = 1 - s %}{% set q = 1 - f * s %}{% set t = 1 - (1 - f) * s %}` +
    `{{ ([${pick}][i % 6] * 255) | round(0) | int }}`
  );
}
const RED = channel("1, q, p, p, t, 1");
const GREEN = channel("t, 1, 1, q, p, p");
const BLUE = channel("p, p, t, 1, 1, q");

function discoveryTopic(config: Config): string {
  return `${config.ha.prefix}/light/${config.lampId}/config`;
}

function statusTopic(config: Config): string {
  return `${config.ha.prefix}/status`;
}

/** The lamp's device in Home Assistant: the light and its diagnostic sensors all hang off this one. */
function device(config: Config): Record<string, unknown> {
  const id = config.lampId;
  return {
    identifiers: [`lamp-agent-${id}`],
    name: config.name === id ? `Lamp ${id}` : config.name,
    manufacturer: "lamp-agent",
    model: config.pins.length === 3 ? "RGB LED lamp" : "Dimmable LED lamp",
    sw_version: VERSION,
  };
}

function availability(config: Config): Record<string, string>[] {
  return [{ topic: config.topics.presence, payload_available: "1", payload_not_available: "0" }];
}

/** The retained discovery config: what Home Assistant needs to show and drive this lamp. */
export function discoveryConfig(config: Config): Record<string, unknown> {
  const rgb = config.pins.length === 3;
  const id = config.lampId;
  return {
    schema: "template",
    // null: the entity takes the device's name ("Lamp <id>"), as Home Assistant 2023.8+ recommends.
    name: null,
    unique_id: `lamp-agent-${id}`,
    command_topic: config.topics.command,
    state_topic: config.topics.state,
    command_on_template: rgb ? COMMAND_ON_RGB : COMMAND_ON_MONO,
    command_off_template: COMMAND_OFF,
    state_template: STATE,
    brightness_template: BRIGHTNESS,
    ...(rgb && { red_template: RED, green_template: GREEN, blue_template: BLUE }),
    availability: availability(config),
    qos: 1,
    // Not retained: a stored command would be replayed (and refused) at every reconnect of the agent.
    retain: false,
    optimistic: false,
    device: device(config),
    origin: { name: "lamp-agent", sw_version: VERSION },
  };
}

/**
 * A JSON field as a sensor's state. A null field renders as the string `None`, which Home Assistant's
 * MQTT entities take for "unknown" (home-assistant/core#53227), not as a figure; the test is spelt
 * `is not none` because Jinja's bare `{{ none }}` prints `None` and nunjucks' prints nothing.
 */
const field = (name: string) => `{{ value_json.${name} if value_json.${name} is not none else 'None' }}`;

/** A diagnostic sensor: what it reads, and what Home Assistant should make of it. */
interface Sensor {
  /** The object id: `<prefix>/sensor/<id>/<key>/config`, and the end of the unique_id. */
  readonly key: string;
  readonly name: string;
  readonly source: "telemetry" | "info";
  readonly field: string;
  readonly extra: Record<string, unknown>;
}

/** Home Assistant's sensor device classes and units (https://www.home-assistant.io/integrations/sensor/). */
export const SENSORS: readonly Sensor[] = [
  {
    key: "uptime",
    name: "Uptime",
    source: "telemetry",
    field: "uptime_s",
    extra: { device_class: "duration", unit_of_measurement: "s", icon: "mdi:timer-outline" },
  },
  {
    key: "cpu_temperature",
    name: "CPU temperature",
    source: "telemetry",
    field: "cpu_temp_c",
    extra: {
      device_class: "temperature",
      unit_of_measurement: "°C",
      state_class: "measurement",
      suggested_display_precision: 1,
    },
  },
  {
    key: "wifi_signal",
    name: "Wi-Fi signal",
    source: "telemetry",
    field: "wifi_rssi_dbm",
    extra: { device_class: "signal_strength", unit_of_measurement: "dBm", state_class: "measurement" },
  },
  { key: "version", name: "Version", source: "info", field: "version", extra: { icon: "mdi:tag-outline" } },
];

function sensorTopic(config: Config, sensor: Sensor): string {
  return `${config.ha.prefix}/sensor/${config.lampId}/${sensor.key}/config`;
}

/** The retained discovery config of one diagnostic sensor on the lamp's device. */
export function sensorConfig(config: Config, sensor: Sensor): Record<string, unknown> {
  const telemetry = sensor.source === "telemetry";
  return {
    name: sensor.name,
    unique_id: `lamp-agent-${config.lampId}-${sensor.key}`,
    state_topic: telemetry ? config.topics.telemetry : config.topics.info,
    value_template: field(sensor.field),
    entity_category: "diagnostic",
    ...sensor.extra,
    availability: availability(config),
    // Three intervals without telemetry: the figures of a lamp gone silent (its Will never published,
    // as on a NATS cluster) show as unavailable instead of its last words.
    ...(telemetry && { expire_after: 3 * config.telemetryInterval }),
    qos: 0,
    device: device(config),
    origin: { name: "lamp-agent", sw_version: VERSION },
  };
}

/**
 * Every discovery message for this lamp: the light and the sensors, and with TELEMETRY_INTERVAL=0 an
 * empty config for each telemetry sensor, which removes one announced before (it would never update).
 */
export function discoveryMessages(config: Config): { topic: string; payload: string }[] {
  const messages = [{ topic: discoveryTopic(config), payload: JSON.stringify(discoveryConfig(config)) }];
  for (const sensor of SENSORS) {
    const off = sensor.source === "telemetry" && config.telemetryInterval === 0;
    messages.push({
      topic: sensorTopic(config, sensor),
      payload: off ? "" : JSON.stringify(sensorConfig(config, sensor)),
    });
  }
  return messages;
}

/** Every retained discovery topic this lamp may own, whatever its configuration says today. */
export function discoveryTopics(config: Config): string[] {
  return [discoveryTopic(config), ...SENSORS.map((sensor) => sensorTopic(config, sensor))];
}

/**
 * Announces the lamp to Home Assistant on every connect, and again whenever Home Assistant says it
 * (re)started (`<prefix>/status` = `online`): it may have lost its view of retained messages.
 */
export class HomeAssistantDiscovery implements Feature {
  readonly name = "home-assistant";
  readonly filters;
  /** HA says `online` once per start; a flood of them must not become a flood of 2 KB configs. */
  private readonly onlines = new RateLimiter(3, 0.2);

  constructor(
    private readonly config: Config,
    private readonly connection: MqttPort,
    private readonly logger: Logger,
  ) {
    this.filters = [{ filter: statusTopic(config) }];
  }

  online(): void {
    this.announce("connected");
  }

  message(topic: string, payload: Buffer): void {
    if (topic !== statusTopic(this.config)) return;
    // Only the word itself: the topic is HA's, and anything may arrive on it.
    if (payload.length <= 16 && payload.toString("utf8").trim() === "online") {
      if (this.onlines.take()) this.announce("home assistant came online");
      else this.logger.debug("ignored a repeated Home Assistant online");
    }
  }

  private announce(why: string): void {
    if (!this.connection.connected) return;
    for (const { topic, payload } of discoveryMessages(this.config)) {
      this.connection.publish(topic, payload, { qos: 1, retain: true }).then(
        () => this.logger.debug({ topic, why }, "published a Home Assistant discovery config"),
        (error: unknown) =>
          this.logger.warn(
            { topic, cause: describeMqttError(error) },
            "could not publish a Home Assistant discovery config (check the broker's ACL)",
          ),
      );
    }
  }
}

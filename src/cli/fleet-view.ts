import type { IPublishPacket } from "mqtt";
import { parseInfo, parseState, type StateMessage } from "../protocol/payloads.js";
import { FLEET_FILTERS, lampIdOf } from "../protocol/topics.js";

/** One lamp as the fleet view shows it. */
export interface LampRow {
  readonly id: string;
  name: string | null;
  presence: "online" | "offline" | "unknown";
  /** When it went offline, when known (the agent stamps its clean-stop `0` on MQTT 5). */
  since: string | null;
  state: Omit<StateMessage, "client"> | null;
  version: string | null;
  groups: readonly string[] | null;
}

/** Every lamp seen on the default topic scheme, from the retained messages a broker holds. */
export class FleetView {
  private readonly lamps = new Map<string, LampRow>();

  static readonly filters: readonly string[] = Object.values(FLEET_FILTERS);

  /** Takes one message from the fleet filters; false when it was nothing of ours. */
  take(topic: string, payload: Buffer, packet: IPublishPacket): boolean {
    const id = lampIdOf(topic);
    if (id === undefined) return false;
    const text = payload.toString();
    if (topic === FLEET_FILTERS.presence.replace("+", id)) {
      // An empty retained message is a removed lamp (`lamp-agent --forget`).
      if (text === "") return this.lamps.delete(id);
      const row = this.row(id);
      row.presence = text === "1" ? "online" : text === "0" ? "offline" : "unknown";
      const stamp = packet.properties?.userProperties?.since;
      row.since = row.presence === "offline" ? ((Array.isArray(stamp) ? stamp[0] : stamp) ?? null) : null;
      return true;
    }
    if (topic.endsWith("/changed")) {
      const state = parseState(text);
      if (!state) return false;
      const { client: _client, ...shown } = state;
      this.row(id).state = shown;
      return true;
    }
    const info = parseInfo(text);
    if (!info) return false;
    const row = this.row(id);
    row.name = info.name ?? row.name;
    row.version = info.version ?? row.version;
    row.groups = info.groups ?? row.groups;
    return true;
  }

  /** Sorted by name, then id: how a person looks a lamp up. */
  rows(): LampRow[] {
    return [...this.lamps.values()].sort(
      (a, b) => (a.name ?? a.id).localeCompare(b.name ?? b.id) || a.id.localeCompare(b.id),
    );
  }

  /** The lamps in a group, as their `info` says (lamps too old to publish one are not counted). */
  members(group: string): LampRow[] {
    return this.rows().filter((row) => row.groups?.includes(group));
  }

  private row(id: string): LampRow {
    let row = this.lamps.get(id);
    if (!row) {
      row = { id, name: null, presence: "unknown", since: null, state: null, version: null, groups: null };
      this.lamps.set(id, row);
    }
    return row;
  }
}

const pct = (value: number) => `${Math.round(value * 100)}%`;

/** The table `lampctl ls` prints: a header, then one line per lamp. */
export function formatTable(rows: readonly LampRow[]): string {
  const lines = [["ID", "NAME", "PRESENCE", "POWER", "COLOUR (H S)", "BRIGHTNESS"]];
  for (const row of rows) {
    const presence = row.since ? `${row.presence} since ${row.since}` : row.presence;
    const state = row.state;
    lines.push([
      row.id,
      row.name ?? "-",
      presence,
      state ? (state.on ? "on" : "off") : "-",
      state ? `${state.color.h.toFixed(2)} ${state.color.s.toFixed(2)}` : "-",
      state ? pct(state.brightness) : "-",
    ]);
  }
  const widths = lines[0]?.map((_, i) => Math.max(...lines.map((line) => (line[i] ?? "").length))) ?? [];
  return lines
    .map((line) =>
      line
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** The same rows for scripts: `lampctl ls --json`. */
export function toJson(rows: readonly LampRow[]): string {
  return JSON.stringify(rows);
}

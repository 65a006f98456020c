import type { IPublishPacket } from "mqtt";
import { parseInfo, parseState, type StateMessage } from "../protocol/payloads.js";
import { FLEET_FILTERS, lampIdOf } from "../protocol/topics.js";

/** One lamp as the fleet view shows it. */
export interface LampRow {
  readonly id: string;
  name: string | null;
  /** `silent`: its presence says 1, but its telemetry is three intervals overdue (see `FleetView`). */
  presence: "online" | "offline" | "silent" | "unknown";
  /**
   * Offline: when it went, when known (the agent stamps its clean-stop `0` on MQTT 5). Silent: its last
   * telemetry, or when the view started watching if none came since.
   */
  since: string | null;
  state: Omit<StateMessage, "client"> | null;
  version: string | null;
  groups: readonly string[] | null;
}

/** How many telemetry intervals without a message make a lamp whose presence says 1 silent. */
export const SILENT_AFTER_INTERVALS = 3;

/**
 * Every lamp seen on the default topic scheme, from the retained messages a broker holds and what
 * arrives while watching.
 *
 * A lamp that dies with its cluster node may never get its Will published (NATS publishes none), so its
 * presence reads 1 forever. Telemetry tells: a lamp whose presence says 1 and whose `telemetry_interval`
 * (from its retained info) is known is shown `silent` once no telemetry came for three intervals. Telemetry
 * is not retained, so the view can only judge from when it started watching: `rows()` judges only the
 * lamps whose three intervals fit in `horizonMs` (how long the caller watches), and shows the others as
 * their presence says.
 */
export class FleetView {
  private readonly lamps = new Map<string, LampRow>();
  /** Per lamp: the seconds between its telemetry messages (0 = it sends none). */
  private readonly intervals = new Map<string, number>();
  /** Per lamp: when it was last heard alive since watching started (telemetry, or a live presence 1). */
  private readonly heard = new Map<string, number>();

  static readonly filters: readonly string[] = Object.values(FLEET_FILTERS);

  /** `startedAt`: when this view started watching (ms since the epoch). */
  constructor(private readonly startedAt: number = Date.now()) {}

  /** Takes one message from the fleet filters; false when it was nothing of ours. */
  take(topic: string, payload: Buffer, packet: IPublishPacket, now: number = Date.now()): boolean {
    const id = lampIdOf(topic);
    if (id === undefined) return false;
    const text = payload.toString();
    if (topic === FLEET_FILTERS.presence.replace("+", id)) {
      // An empty retained message is a removed lamp (`lamp-agent --forget`).
      if (text === "") {
        this.heard.delete(id);
        this.intervals.delete(id);
        return this.lamps.delete(id);
      }
      const row = this.row(id);
      row.presence = text === "1" ? "online" : text === "0" ? "offline" : "unknown";
      // A live 1 is the lamp (re)connecting now: its first telemetry follows at once.
      if (text === "1" && !packet.retain) this.heard.set(id, now);
      const stamp = packet.properties?.userProperties?.since;
      row.since = row.presence === "offline" ? ((Array.isArray(stamp) ? stamp[0] : stamp) ?? null) : null;
      return true;
    }
    if (topic === FLEET_FILTERS.telemetry.replace("+", id)) {
      // Only that it arrived matters here; the figures are for Home Assistant and people.
      if (!this.lamps.has(id)) return false;
      this.heard.set(id, now);
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
    if (info.telemetry_interval !== undefined) this.intervals.set(id, info.telemetry_interval);
    return true;
  }

  /**
   * Sorted by name, then id: how a person looks a lamp up. Copies, with the silent rule applied at `now`
   * to the lamps whose three intervals fit in `horizonMs`.
   */
  rows(now: number = Date.now(), horizonMs = Number.POSITIVE_INFINITY): LampRow[] {
    return [...this.lamps.values()]
      .map((row) => {
        const silentSince = this.silentSince(row, now, horizonMs);
        return silentSince === undefined
          ? { ...row }
          : { ...row, presence: "silent" as const, since: new Date(silentSince).toISOString() };
      })
      .sort((a, b) => (a.name ?? a.id).localeCompare(b.name ?? b.id) || a.id.localeCompare(b.id));
  }

  /**
   * True while some lamp that `rows(now, horizonMs)` judges has not been heard since watching started
   * and is not yet overdue: the answer for it is still to come.
   */
  undecided(now: number, horizonMs: number): boolean {
    for (const row of this.lamps.values()) {
      const window = this.window(row, horizonMs);
      if (window !== undefined && !this.heard.has(row.id) && now - this.startedAt < window) return true;
    }
    return false;
  }

  /** The lamps in a group, as their `info` says (lamps too old to publish one are not counted). */
  members(group: string): LampRow[] {
    return this.rows().filter((row) => row.groups?.includes(group));
  }

  /** Three intervals in ms, for a lamp the rule applies to within `horizonMs`; else undefined. */
  private window(row: LampRow, horizonMs: number): number | undefined {
    const interval = this.intervals.get(row.id);
    if (row.presence !== "online" || !interval) return undefined;
    const window = SILENT_AFTER_INTERVALS * interval * 1000;
    return window <= horizonMs ? window : undefined;
  }

  private silentSince(row: LampRow, now: number, horizonMs: number): number | undefined {
    const window = this.window(row, horizonMs);
    if (window === undefined) return undefined;
    const last = this.heard.get(row.id) ?? this.startedAt;
    return now - last >= window ? last : undefined;
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

const HEADER = ["ID", "NAME", "PRESENCE", "POWER", "COLOUR (H S)", "BRIGHTNESS"];

/** One lamp's cells, in the table's columns. */
export function rowCells(row: LampRow): string[] {
  const presence = row.since ? `${row.presence} since ${row.since}` : row.presence;
  const state = row.state;
  return [
    row.id,
    row.name ?? "-",
    presence,
    state ? (state.on ? "on" : "off") : "-",
    state ? `${state.color.h.toFixed(2)} ${state.color.s.toFixed(2)}` : "-",
    state ? pct(state.brightness) : "-",
  ];
}

/** The table `lampctl ls` prints: a header, then one line per lamp. */
export function formatTable(rows: readonly LampRow[]): string {
  const lines = [HEADER, ...rows.map(rowCells)];
  const widths = HEADER.map((_, i) => Math.max(...lines.map((line) => (line[i] ?? "").length)));
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

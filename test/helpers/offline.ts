import type { Fleet } from "./fleet.js";
import type { LogLine } from "./log.js";
import type { OfflineSpan, PresenceWatcher } from "./presence-watcher.js";

/** The agent's log lines that mean its connection just ended: lost, or taken over (and it waits). */
const ENDS_A_CONNECTION = [
  "lost the broker connection",
  "another client connected with this client id",
  "taken over again",
];

/**
 * When a lamp was connected, by its own log: from each CONNACK to its loss, or to the start of the next
 * successful try when the loss went unlogged (a takeover's, say).
 */
export function connectedSpans(logs: readonly LogLine[], until: number): { from: number; to: number }[] {
  const spans: { from: number; to: number }[] = [];
  let from: number | undefined;
  for (const line of logs) {
    const at = line.time as number;
    if (line.msg === "connected to the broker") {
      if (from !== undefined) spans.push({ from, to: at - Number(line.tookMs ?? 0) });
      from = at;
    } else if (from !== undefined && ENDS_A_CONNECTION.some((start) => line.msg.startsWith(start))) {
      spans.push({ from, to: at });
      from = undefined;
    }
  }
  if (from !== undefined) spans.push({ from, to: until });
  return spans;
}

/** The longest time any lamp read anything but `1` while it was connected, from `since` on. */
export function worstOfflineWhileConnected(
  fleet: Fleet,
  watcher: PresenceWatcher,
  since: number,
): OfflineSpan {
  let worst: OfflineSpan = { id: "", ms: 0, from: since };
  for (const lamp of fleet.lamps) {
    for (const span of connectedSpans(lamp.agent.logs, lamp.exitedAt() ?? Date.now())) {
      const offline = watcher.worstOfflineWithin(lamp.id, Math.max(span.from, since), span.to);
      if (offline.ms > worst.ms) worst = offline;
    }
  }
  return worst;
}

import { randomBytes } from "node:crypto";
import { type AgentProcess, spawnAgent } from "./agent-process.js";
import { type PresenceWatcher, watchPresence } from "./presence-watcher.js";

/** A lamp of the fleet: the built agent as a real process, with when it ran. */
export interface FleetLamp {
  readonly id: string;
  /** `lamp-<id>`, the agent's default MQTT client id. */
  readonly clientId: string;
  readonly agent: AgentProcess;
  readonly startedAt: number;
  /** When its process exited, or undefined while it runs. */
  exitedAt(): number | undefined;
}

export interface Fleet {
  readonly lamps: readonly FleetLamp[];
  readonly ids: readonly string[];
  lamp(id: string): FleetLamp;
  /** From its start until its exit (or now): when the lamp's process ran. */
  alive(id: string): { from: number; to: number };
  /** SIGKILL one lamp's agent (a Pi that loses power) and wait for the exit. */
  kill(id: string): Promise<void>;
  /** SIGTERM every agent still running and wait for all of them (what teardown calls). */
  stop(): Promise<void>;
}

export interface FleetOptions {
  readonly count: number;
  /** Passed to every agent unchanged: one node's URL, or a comma-separated cluster list. */
  readonly mqttUrl: string;
  /** Extra environment for every agent (over the fleet's defaults below). */
  readonly env?: Record<string, string>;
  /** Lamp ids are `<prefix>-<n>`; a random prefix by default, so fleets never share ids. */
  readonly idPrefix?: string;
}

/**
 * `count` built agents (`node dist/main.js`) as real processes on the mock driver, each with its own
 * LAMP_ID and temp dir (state file, pin trace). Logs at info: thirty agents at debug load two cores.
 */
export function startFleet(options: FleetOptions): Fleet {
  const prefix = options.idPrefix ?? newPrefix();
  const lamps: FleetLamp[] = [];
  for (const id of fleetIds(prefix, options.count)) {
    const agent = spawnAgent(options.mqttUrl, { LOG_LEVEL: "info", ...options.env }, { id });
    let exitedAt: number | undefined;
    void agent.exited.then(() => {
      exitedAt = Date.now();
    });
    lamps.push({ id, clientId: `lamp-${id}`, agent, startedAt: Date.now(), exitedAt: () => exitedAt });
  }
  const byId = new Map(lamps.map((lamp) => [lamp.id, lamp]));
  const lamp = (id: string): FleetLamp => {
    const found = byId.get(id);
    if (!found) throw new Error(`no lamp ${id} in this fleet`);
    return found;
  };
  return {
    lamps,
    ids: lamps.map((l) => l.id),
    lamp,
    alive(id) {
      const l = lamp(id);
      return { from: l.startedAt, to: l.exitedAt() ?? Date.now() };
    },
    async kill(id) {
      const { agent } = lamp(id);
      if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill("SIGKILL");
      await agent.exited;
    },
    async stop() {
      await Promise.all(lamps.map((l) => l.agent.stop()));
    },
  };
}

const newPrefix = () => `fl${randomBytes(3).toString("hex")}`;
const fleetIds = (prefix: string, count: number) => Array.from({ length: count }, (_, n) => `${prefix}-${n}`);

/**
 * startFleet() with a presence watcher on `watchUrl`, the watcher subscribed first and given a second
 * before any lamp starts. A NATS node forwards a live message only to the interest it already knows of,
 * and the retained replay of a subscription made meanwhile on another node may not hold it yet: one lamp
 * of 30 read nothing for 90 s while it obeyed the group command, its watcher having subscribed just after.
 */
export async function startWatchedFleet(
  options: FleetOptions & { readonly watchUrl: string },
): Promise<{ fleet: Fleet; watcher: PresenceWatcher }> {
  const prefix = options.idPrefix ?? newPrefix();
  const watcher = await watchPresence(options.watchUrl, fleetIds(prefix, options.count));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return { fleet: startFleet({ ...options, idPrefix: prefix }), watcher };
}

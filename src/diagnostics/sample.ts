import { loadavg } from "node:os";
import type { TelemetryMessage } from "../protocol/payloads.js";
import { readCpuTemperature } from "./thermal.js";
import { readWifiSignal } from "./wireless.js";

export interface SampleSources {
  readonly sysfsRoot: string;
  readonly procRoot: string;
  /** Seconds since the agent started. */
  readonly uptime: () => number;
}

const MIB = 1024 * 1024;

/**
 * One telemetry reading, apart from the reconnect count the feature keeps. `memoryUsage.rss()` rather
 * than `memoryUsage()`, which also collects the V8 heap statistics; docs/performance.md has the cost.
 */
export function sample(sources: SampleSources): Omit<TelemetryMessage, "reconnects"> {
  return {
    uptime_s: Math.floor(sources.uptime()),
    rss_mib: Math.round((process.memoryUsage.rss() / MIB) * 10) / 10,
    cpu_temp_c: readCpuTemperature(sources.sysfsRoot),
    wifi_rssi_dbm: readWifiSignal(sources.procRoot),
    load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}

import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * The SoC's temperature in °C from the first thermal zone (`<sysfsRoot>/class/thermal/thermal_zone0/temp`,
 * millidegrees), one decimal; null off a Pi or wherever the zone is absent or says something else.
 * Synchronous on purpose: a sysfs attribute is a few bytes answered from the kernel, and the sync read
 * costs a fraction of an async one (bench/telemetry.mjs).
 */
export function readCpuTemperature(sysfsRoot: string): number | null {
  let text: string;
  try {
    text = readFileSync(path.join(sysfsRoot, "class/thermal/thermal_zone0/temp"), "utf8");
  } catch {
    return null;
  }
  const trimmed = text.trim();
  if (!/^-?\d+$/.test(trimmed)) return null;
  const celsius = Number(trimmed) / 1000;
  // Beyond what silicon survives: a driver's error code, not a temperature.
  if (celsius < -60 || celsius > 150) return null;
  return Math.round(celsius * 10) / 10;
}

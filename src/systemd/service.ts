import { lstatSync } from "node:fs";
import path from "node:path";
import { INSTALLED_CONFIG_DIR, INSTALLED_ENV_FILE } from "../config-files.js";
import type { DriverName } from "../drivers/driver.js";

/**
 * systemd's record of the installed service's current run, present while the unit is active: a symlink
 * named after the unit whose target is the invocation id, not a file. It dangles, so only lstat sees it.
 */
export const SERVICE_MARKER = "/run/systemd/units/invocation:lamp-agent.service";

export function serviceIsRunning(marker = SERVICE_MARKER): boolean {
  try {
    lstatSync(marker);
    return true;
  } catch {
    return false;
  }
}

export interface HandRun {
  readonly env: NodeJS.ProcessEnv;
  readonly driver: DriverName | "auto";
  /** The configuration file the run read, if any (LoadedConfig.file). */
  readonly file: string | undefined;
  readonly marker?: string;
}

/**
 * Why the agent must not run by hand now, or undefined. Beside the running service it would fight it for
 * the pins (any driver but the mock) or, with the installed configuration, for the broker's client id,
 * and stopping it would switch the service's lamp off.
 */
export function handRunConflict(run: HandRun): string | undefined {
  if (run.env.INVOCATION_ID !== undefined) return undefined; // started by systemd: this is a service
  if (!serviceIsRunning(run.marker)) return undefined;
  const installed = run.file === path.join(INSTALLED_CONFIG_DIR, INSTALLED_ENV_FILE);
  if (run.driver === "mock" && !installed) return undefined;
  return (
    "lamp-agent.service is running and drives this lamp: a second agent would fight it for the " +
    `${installed ? "pins and the broker's client id" : "pins"}. Its log: journalctl -u lamp-agent -f; ` +
    "check or test it: lamp-agent --check, lamp-agent --test; to run by hand: sudo systemctl stop lamp-agent first"
  );
}

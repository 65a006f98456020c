import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import dotenv from "dotenv";

/** Where install.sh puts the configuration and the broker password (docs/deployment.md). */
export const INSTALLED_CONFIG_DIR = "/etc/lamp-agent";
export const INSTALLED_ENV_FILE = "lamp-agent.env";
export const INSTALLED_PASSWORD_FILE = "mqtt-password";

/** The variables of one configuration file, and how `--check` names the file. */
export interface ConfigFile {
  readonly path: string;
  /** `.env` for the working directory's file, else its full path. */
  readonly label: string;
  readonly values: Readonly<Record<string, string>>;
}

export interface ConfigFiles {
  /** The file the configuration was read from, besides the environment; none without one. */
  readonly file?: ConfigFile | undefined;
  /** The installed password file, when the configuration is the installed one and sets no password. */
  readonly passwordFile?: string | undefined;
  readonly warnings: readonly string[];
}

export interface FindOptions {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Where an installed configuration lives (default /etc/lamp-agent); tests point it at a temp dir. */
  readonly installedDir?: string;
}

/** Whether this process may read `file`. */
export function readable(file: string): boolean {
  try {
    accessSync(file, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The file that fills in what the environment does not set: `.env` in the working directory; without
 * one, the installed /etc/lamp-agent/lamp-agent.env, with its password file, so `lamp-agent --check` and
 * `lampctl` run by hand on an installed Pi use the service's configuration. Not under systemd, which has
 * already applied it (EnvironmentFile=, LoadCredential=) and runs the agent as a user that cannot read it.
 */
export function findConfigFiles(options: FindOptions): ConfigFiles {
  const local = path.join(options.cwd, ".env");
  if (existsSync(local)) {
    return { file: { path: local, label: ".env", values: parse(local) }, warnings: [] };
  }
  const dir = options.installedDir ?? INSTALLED_CONFIG_DIR;
  const envFile = path.join(dir, INSTALLED_ENV_FILE);
  if (options.env.INVOCATION_ID !== undefined || !existsSync(envFile)) return { warnings: [] };
  if (!readable(envFile)) {
    return {
      warnings: [
        `cannot read the installed configuration ${envFile}: run as root (sudo) to use it, or put a .env here`,
      ],
    };
  }
  const values = parse(envFile);
  const file = { path: envFile, label: envFile, values };
  const password = path.join(dir, INSTALLED_PASSWORD_FILE);
  const setsPassword = ["MQTT_PASSWORD", "MQTT_PASSWORD_FILE"].some(
    (name) => options.env[name] || values[name],
  );
  if (setsPassword || !existsSync(password)) return { file, warnings: [] };
  if (!readable(password)) {
    return {
      file,
      warnings: [`cannot read the installed broker password ${password}: run as root (sudo) to use it`],
    };
  }
  return { file, passwordFile: password, warnings: [] };
}

function parse(file: string): Record<string, string> {
  return dotenv.parse(readFileSync(file));
}

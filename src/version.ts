import { readFileSync } from "node:fs";

/** Set by scripts/build.mjs, so the bundle needs no package.json beside it. */
declare const __LAMP_AGENT_VERSION__: string | undefined;

/** The package version: baked into the bundle, or read from package.json when run from src/ (tests). */
export const VERSION: string =
  typeof __LAMP_AGENT_VERSION__ === "string" ? __LAMP_AGENT_VERSION__ : readPackageVersion();

function readPackageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

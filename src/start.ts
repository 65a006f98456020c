#!/usr/bin/env node
// dist/main.js, the `lamp-agent` command: runs the agent's bundle (dist/agent.js, from src/main.ts)
// through V8's code cache. Kept to Node's own modules, so there is little here to compile.
import { fileURLToPath } from "node:url";
import { runBundle } from "./code-cache.js";

/** The bundle's hash, set by scripts/build.mjs. */
declare const __LAMP_BUNDLE_ID__: string;

runBundle({
  bundle: fileURLToPath(new URL("./agent.js", import.meta.url)),
  bundleId: __LAMP_BUNDLE_ID__,
  env: process.env,
  writeAfterMs: 5000,
});

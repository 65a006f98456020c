import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Script } from "node:vm";

/**
 * How the agent's bundle was compiled this run, for the start log line:
 * - `used`: from the cache a previous run wrote;
 * - `written`: no cache yet; this run writes one once it has run for a while;
 * - `rejected`: V8 refused the cache (another Node.js, other V8 flags); this run writes a new one;
 * - `off`: no cache directory (NODE_DISABLE_COMPILE_CACHE, or neither CACHE_DIRECTORY nor a home).
 */
export type CodeCacheStatus = "used" | "written" | "rejected" | "off";

/** Where dist/main.js leaves the status for the agent, which is a separate bundle. */
export const CODE_CACHE_STATUS = Symbol.for("lamp-agent.codeCache");

/** The status dist/main.js left, or undefined when the agent runs from the sources (tests). */
export function codeCacheStatus(): CodeCacheStatus | undefined {
  return (globalThis as { [CODE_CACHE_STATUS]?: CodeCacheStatus })[CODE_CACHE_STATUS];
}

const PREFIX = "agent-";
const SUFFIX = ".v8cache";
/**
 * Another bundle's cache is removed once it is this old: after an update the old one is dead weight,
 * but two builds run side by side (a benchmark of two versions) must not remove each other's.
 */
const STALE_MS = 24 * 60 * 60 * 1000;

/**
 * systemd's CacheDirectory= (the unit's), else the user's cache directory. Never a shared temporary
 * directory: V8 runs what a cache holds, so only its owner may be able to write one.
 */
export function cacheDirectory(env: NodeJS.ProcessEnv): string | undefined {
  if (env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  const systemd = env.CACHE_DIRECTORY?.split(":")[0];
  if (systemd) return systemd;
  const base = env.XDG_CACHE_HOME || (env.HOME ? path.join(env.HOME, ".cache") : undefined);
  return base ? path.join(base, "lamp-agent") : undefined;
}

/**
 * One file per bundle, place, Node.js and architecture. V8 checks its own version and flags, not the
 * code; and a script compiled from a cache keeps the path it was made at, which stack traces then
 * show, so two copies of one bundle (two clones, a copied dist/) keep a cache each.
 */
export function cacheFileName(bundleId: string, bundle: string): string {
  return `${PREFIX}${bundleId}-${pathHash(bundle)}-node${process.versions.node}-${process.arch}${SUFFIX}`;
}

/** FNV-1a: a name, not a secret, and node:crypto would start OpenSSL in every agent. */
function pathHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return (hash >>> 0).toString(16).padStart(8, "0");
}

export interface RunOptions {
  /** The bundle: a function expression taking CommonJS's five parameters (scripts/build.mjs). */
  readonly bundle: string;
  /** Changes whenever the bundle's text does (its hash, from the build). */
  readonly bundleId: string;
  readonly env: NodeJS.ProcessEnv;
  /** How long the agent runs before its compiled code is saved: long enough to have connected. */
  readonly writeAfterMs: number;
}

/**
 * Compiles the bundle with V8's code cache and runs it. A start then skips parsing and compiling what
 * the last long run compiled (the start path, the connection, MQTT.js's parser), which was a fifth of
 * a start to presence (docs/performance.md). Any problem with the cache costs only that: the bundle is
 * compiled from its text as without one.
 */
export function runBundle(options: RunOptions): CodeCacheStatus {
  const dir = cacheDirectory(options.env);
  const file =
    dir === undefined ? undefined : path.join(dir, cacheFileName(options.bundleId, options.bundle));
  const { script, status } = compile(options.bundle, file);
  (globalThis as { [CODE_CACHE_STATUS]?: CodeCacheStatus })[CODE_CACHE_STATUS] = status;
  if (dir !== undefined && file !== undefined && status !== "used") {
    setTimeout(() => save(script, dir, file), options.writeAfterMs).unref();
  }
  const body = script.runInThisContext() as (
    exports: object,
    require: NodeJS.Require,
    module: { exports: object },
    filename: string,
    dirname: string,
  ) => void;
  const module = { exports: {} };
  body(module.exports, createRequire(options.bundle), module, options.bundle, path.dirname(options.bundle));
  return status;
}

// A function of its own, so the cache's buffer is garbage before the bundle runs (and allocates).
function compile(bundle: string, file: string | undefined): { script: Script; status: CodeCacheStatus } {
  const source = readFileSync(bundle, "utf8");
  let cachedData: Buffer | undefined;
  try {
    if (file !== undefined) cachedData = readFileSync(file);
  } catch {
    // None yet, or unreadable: compiled from the text, and a new one is written.
  }
  const script = new Script(source, { filename: bundle, ...(cachedData ? { cachedData } : {}) });
  const status: CodeCacheStatus =
    file === undefined ? "off" : !cachedData ? "written" : script.cachedDataRejected ? "rejected" : "used";
  return { script, status };
}

/** Writes the cache whole or not at all, and removes the old caches of other bundles. */
export function save(script: Script, dir: string, file: string): boolean {
  try {
    const data = script.createCachedData();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, data, { mode: 0o600 });
    renameSync(partial, file);
    const name = path.basename(file);
    for (const other of readdirSync(dir)) {
      if (other === name || !other.startsWith(PREFIX) || !other.includes(SUFFIX)) continue;
      const otherFile = path.join(dir, other);
      try {
        if (statSync(otherFile).mtimeMs < Date.now() - STALE_MS) rmSync(otherFile, { force: true });
      } catch {
        // Removed by another run meanwhile.
      }
    }
    return true;
  } catch {
    // A read-only or full disk costs the next start its compile, and nothing else.
    return false;
  }
}

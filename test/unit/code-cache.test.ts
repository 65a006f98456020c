import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Script } from "node:vm";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CODE_CACHE_STATUS,
  type CodeCacheStatus,
  cacheDirectory,
  cacheFileName,
  codeCacheStatus,
  runBundle,
  save,
} from "../../src/code-cache.js";

let dir: string;
let bundle: string;
const ran: string[] = [];

// A bundle as scripts/build.mjs makes it: a function expression of CommonJS's five parameters, with
// enough code that V8 has functions to cache.
const BUNDLE = `(function(exports,require,module,__filename,__dirname){"use strict";
function add(a, b) { return a + b; }
function label(n) { return "n=" + add(n, 1); }
globalThis.__codeCacheTestRan.push(label(require("node:path").basename(__filename).length));
})`;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "lamp-code-cache-"));
  bundle = path.join(dir, "agent.js");
  writeFileSync(bundle, BUNDLE);
  ran.length = 0;
  (globalThis as { __codeCacheTestRan?: string[] }).__codeCacheTestRan = ran;
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
  delete (globalThis as { [CODE_CACHE_STATUS]?: unknown })[CODE_CACHE_STATUS];
  rmSync(dir, { recursive: true, force: true });
});

const cacheDir = () => path.join(dir, "cache");
const run = (env: NodeJS.ProcessEnv = { CACHE_DIRECTORY: cacheDir() }, bundleId = "b1"): CodeCacheStatus =>
  runBundle({ bundle, bundleId, env, writeAfterMs: 5000 });

describe("runBundle", () => {
  it("runs the bundle with require, __filename and a module, and says where its code came from", () => {
    expect(run()).toBe("written");
    // basename("agent.js").length is 8: require and __filename are the bundle's own.
    expect(ran).toEqual(["n=9"]);
    expect(codeCacheStatus()).toBe("written");
  });

  it("writes the cache once the agent has run a while, and the next start uses it", () => {
    run();
    expect(readdirSync(dir)).not.toContain("cache");
    vi.advanceTimersByTime(5000);
    expect(readdirSync(cacheDir())).toEqual([cacheFileName("b1", bundle)]);
    expect(statSync(cacheDir()).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(cacheDir(), cacheFileName("b1", bundle))).mode & 0o777).toBe(0o600);

    expect(run()).toBe("used");
    expect(ran).toEqual(["n=9", "n=9"]);
    // A start from the cache writes nothing.
    vi.advanceTimersByTime(5000);
    expect(readdirSync(cacheDir())).toEqual([cacheFileName("b1", bundle)]);
  });

  it("compiles from the text when V8 rejects the cache, and replaces it", () => {
    mkdirCache();
    writeFileSync(
      path.join(cacheDir(), cacheFileName("b1", bundle)),
      Buffer.from("not a V8 code cache at all"),
    );
    expect(run()).toBe("rejected");
    expect(ran).toEqual(["n=9"]);
    vi.advanceTimersByTime(5000);
    expect(run()).toBe("used");
  });

  it("removes another bundle's cache once it is a day old, not before", () => {
    run(undefined, "old");
    vi.advanceTimersByTime(5000);
    run(undefined, "new");
    vi.advanceTimersByTime(5000);
    // Two builds side by side (a benchmark of two versions) keep both.
    expect(readdirSync(cacheDir()).sort()).toEqual(
      [cacheFileName("new", bundle), cacheFileName("old", bundle)].sort(),
    );

    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);
    utimesSync(path.join(cacheDir(), cacheFileName("old", bundle)), twoDaysAgo, twoDaysAgo);
    run(undefined, "newer");
    vi.advanceTimersByTime(5000);
    expect(readdirSync(cacheDir()).sort()).toEqual(
      [cacheFileName("new", bundle), cacheFileName("newer", bundle)].sort(),
    );
  });

  it("is off without a cache directory, and when NODE_DISABLE_COMPILE_CACHE is set", () => {
    expect(run({})).toBe("off");
    expect(run({ CACHE_DIRECTORY: cacheDir(), NODE_DISABLE_COMPILE_CACHE: "1" })).toBe("off");
    vi.advanceTimersByTime(5000);
    expect(readdirSync(dir)).toEqual(["agent.js"]);
    expect(ran).toEqual(["n=9", "n=9"]);
  });

  it("starts all the same when the cache cannot be written", () => {
    // A file where the directory should be: mkdir fails.
    writeFileSync(cacheDir(), "");
    expect(run()).toBe("written");
    vi.advanceTimersByTime(5000);
    expect(ran).toEqual(["n=9"]);
  });

  it("keeps a cache per copy of one bundle: a cached script shows the path it was made at", () => {
    run();
    vi.advanceTimersByTime(5000);
    const copy = path.join(dir, "copy", "agent.js");
    mkdirSync(path.dirname(copy));
    writeFileSync(copy, BUNDLE);
    expect(
      runBundle({ bundle: copy, bundleId: "b1", env: { CACHE_DIRECTORY: cacheDir() }, writeAfterMs: 5000 }),
    ).toBe("written");
    expect(cacheFileName("b1", copy)).not.toBe(cacheFileName("b1", bundle));
  });
});

describe("cacheDirectory", () => {
  it("is systemd's CacheDirectory first, then the user's cache, never a shared temporary directory", () => {
    expect(cacheDirectory({ CACHE_DIRECTORY: "/var/cache/lamp-agent:/other", HOME: "/home/pi" })).toBe(
      "/var/cache/lamp-agent",
    );
    expect(cacheDirectory({ XDG_CACHE_HOME: "/x", HOME: "/home/pi" })).toBe("/x/lamp-agent");
    expect(cacheDirectory({ HOME: "/home/pi" })).toBe("/home/pi/.cache/lamp-agent");
    expect(cacheDirectory({ TMPDIR: "/tmp" })).toBeUndefined();
  });
});

describe("save", () => {
  it("leaves no partial file behind when it cannot finish", () => {
    const script = new Script("1");
    mkdirCache();
    const target = path.join(cacheDir(), "missing", cacheFileName("b1", bundle));
    expect(save(script, cacheDir(), target)).toBe(false);
    expect(readdirSync(cacheDir())).toEqual([]);
  });
});

function mkdirCache(): void {
  mkdirSync(cacheDir(), { recursive: true });
}

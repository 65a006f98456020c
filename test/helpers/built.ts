import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from "node:fs";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "../..");
export const MAIN = path.join(ROOT, "dist/main.js");

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(file) : statSync(file).mtimeMs);
  }
  return newest;
}

/**
 * The built agent, for tests that run the real process. `npm test` builds first; when a single test
 * file is run after editing src/, this rebuilds (once, under a lock, as test files run in parallel).
 */
export function builtMain(): string {
  const fresh = () => existsSync(MAIN) && statSync(MAIN).mtimeMs >= newestSource(path.join(ROOT, "src"));
  if (fresh()) return MAIN;
  mkdirSync(path.join(ROOT, ".cache"), { recursive: true });
  const lock = path.join(ROOT, ".cache", "build-lock");
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`${lock} held for two minutes; remove it if stale`);
      execFileSync("sleep", ["0.2"]);
    }
  }
  try {
    if (!fresh()) execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT, stdio: "ignore" });
  } finally {
    rmdirSync(lock);
  }
  return MAIN;
}

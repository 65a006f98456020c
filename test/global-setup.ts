import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return latest;
}

/**
 * End-to-end tests run the built agent: build it when dist/ is missing or older than src/.
 *
 * Every temp dir of the run (tests, brokers, agents: all through os.tmpdir(), which reads TMPDIR) goes
 * in one dir of the run's own, removed at the end: the workers are killed, not exited, so helpers that
 * tidy on `exit` never did, and a day of runs left hundreds of dirs in /tmp.
 */
export default function setup(): () => void {
  const main = path.join(root, "dist", "main.js");
  if (!existsSync(main) || statSync(main).mtimeMs < newest(path.join(root, "src"))) {
    execFileSync(process.execPath, [path.join(root, "scripts/build.mjs")], { cwd: root, stdio: "inherit" });
  }
  const run = mkdtempSync(path.join(tmpdir(), "lamp-test-run-"));
  const before = process.env.TMPDIR;
  process.env.TMPDIR = run;
  return () => {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    rmSync(run, { recursive: true, force: true });
  };
}

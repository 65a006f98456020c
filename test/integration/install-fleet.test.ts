import { execFileSync, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `install.sh --host a,b,...` on the laptop's side: hosts parsed, one build, one Pi at a time, each
// checked, the first failure ends it, and the summary table. The Pis are a fake ssh that plays
// install.sh on each (as told by a plan); the Pi's side (systemd, the wait for the lamp's info and
// presence on a real broker) is test/system/lifecycle.system.ts.

const repo = fileURLToPath(new URL("../..", import.meta.url));
const VERSION = (JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")) as { version: string })
  .version;

const FAKE_SSH = `#!/usr/bin/env node
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
let args = process.argv.slice(2);
if (args[0] === "-t") args = args.slice(1);
const [host, command] = args;
fs.appendFileSync(process.env.FAKE_SSH_LOG, host + "\\t" + command + "\\n");
const plan = JSON.parse(fs.readFileSync(process.env.FAKE_SSH_PLAN, "utf8"))[host] ?? "unreachable";
if (plan === "unreachable") {
  process.stderr.write("ssh: connect to host " + host + " port 22: Connection refused\\n");
  process.exit(255);
}
if (command === "id -u") { console.log("0"); process.exit(0); }
const m = /bash (\\S+)\\/scripts\\/install\\.sh(.*?); status=/.exec(command);
if (!m) process.exit(spawnSync("bash", ["-c", command], { stdio: "inherit" }).status ?? 1);
const [, dir, rest] = m;
const bundle = !rest.includes("--uninstall");
const arrived = fs.existsSync(dir + "/dist/main.js") === bundle && fs.existsSync(dir + "/scripts/install.sh");
fs.rmSync(dir, { recursive: true, force: true });
if (!arrived) { console.error("lamp-agent: error: no bundle arrived"); process.exit(1); }
const version = (/--await-version (\\S+)/.exec(rest) ?? [])[1];
console.log("lamp-agent: restarting lamp-agent.service");
if (plan.startsWith("fail ")) { console.error("lamp-agent: error: " + plan.slice(5)); process.exit(1); }
if (plan === "quiet") { console.log("lamp-agent: done"); process.exit(0); }
const [, id, old] = plan.split(" ");
console.log("lamp-agent: lamp " + id + " is online with version " + version + " (was " + old + ")");
console.log("lamp-agent: done");
`;

let clone: string;
let fake: string;

function fleet(args: string[], plan: Record<string, string>) {
  const log = path.join(fake, `ssh-${Date.now()}-${Math.random()}.log`);
  writeFileSync(log, "");
  writeFileSync(path.join(fake, "plan.json"), JSON.stringify(plan));
  const result = spawnSync("bash", [path.join(clone, "scripts/install.sh"), ...args], {
    cwd: clone,
    env: {
      ...process.env,
      PATH: `${path.join(fake, "bin")}:${process.env.PATH}`,
      FAKE_SSH_LOG: log,
      FAKE_SSH_PLAN: path.join(fake, "plan.json"),
    },
    encoding: "utf8",
    timeout: 120_000,
  });
  const contacted = readFileSync(log, "utf8")
    .split("\n")
    .filter((line) => line.includes("scripts/install.sh"))
    .map((line) => line.split("\t")[0]);
  return { code: result.status, stdout: result.stdout, stderr: result.stderr, contacted };
}

describe("install.sh --host with several hosts", () => {
  beforeAll(() => {
    clone = mkdtempSync(path.join(tmpdir(), "lamp-fleet-clone-"));
    fake = mkdtempSync(path.join(tmpdir(), "lamp-fleet-fake-"));
    const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      cwd: repo,
    })
      .toString()
      .split("\0")
      .filter((file) => file !== "" && existsSync(path.join(repo, file)));
    for (const file of files) {
      mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
      cpSync(path.join(repo, file), path.join(clone, file));
    }
    // The operator's `npm run build`, newer than the sources: install.sh sends it as it is.
    cpSync(path.join(repo, "dist"), path.join(clone, "dist"), { recursive: true });
    const now = new Date().toISOString();
    for (const file of readdirSync(path.join(clone, "dist"), { recursive: true }))
      execFileSync("touch", ["-d", now, path.join(clone, "dist", String(file))]);
    mkdirSync(path.join(fake, "bin"));
    writeFileSync(path.join(fake, "bin/ssh"), FAKE_SSH, { mode: 0o755 });
  });

  afterAll(() => {
    rmSync(clone, { recursive: true, force: true });
    rmSync(fake, { recursive: true, force: true });
  });

  it("updates each host in turn, checked, and ends with a table of host, lamp id, old and new version", () => {
    const hostsFile = path.join(fake, "hosts");
    writeFileSync(hostsFile, "# the attic and the porch\npi@attic   # upstairs\n\n  pi@porch\n");
    const run = fleet(["--host", "pi@kitchen,pi@hall", "--hosts-file", hostsFile], {
      "pi@kitchen": "ok b827eb000001 0.1.0",
      "pi@hall": "ok b827eb000002 none",
      "pi@attic": "ok attic 0.1.0",
      "pi@porch": "ok porch 0.0.9",
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.contacted).toEqual(["pi@kitchen", "pi@hall", "pi@attic", "pi@porch"]);
    expect(run.stdout).toContain("--- pi@hall (2 of 4)");
    const table = run.stdout.slice(run.stdout.indexOf("HOST"));
    const rows = table
      .trim()
      .split("\n")
      .map((line) => line.trim().split(/\s{2,}/));
    expect(rows).toEqual([
      ["HOST", "LAMP ID", "OLD", "NEW"],
      ["pi@kitchen", "b827eb000001", "0.1.0", VERSION],
      ["pi@hall", "b827eb000002", "none", VERSION],
      ["pi@attic", "attic", "0.1.0", VERSION],
      ["pi@porch", "porch", "0.0.9", VERSION],
    ]);
  });

  it("stops at the first failure, naming the host and why; the hosts after it are not touched", () => {
    const run = fleet(["--host", "pi@kitchen,pi@hall,pi@attic"], {
      "pi@kitchen": "ok kitchen 0.1.0",
      "pi@hall": `fail the lamp did not come online with version ${VERSION} within 60s: its presence is 0`,
      "pi@attic": "ok attic 0.1.0",
    });
    expect(run.code).toBe(1);
    expect(run.contacted).toEqual(["pi@kitchen", "pi@hall"]);
    // What was done before it, in the table.
    expect(run.stdout).toMatch(
      new RegExp(`^pi@kitchen\\s+kitchen\\s+0\\.1\\.0\\s+${VERSION.replaceAll(".", "\\.")}$`, "m"),
    );
    expect(run.stderr).toContain(
      `lamp-agent: error: stopped at pi@hall (2 of 3): the lamp did not come online with version ${VERSION} within 60s: its presence is 0; not updated: pi@attic`,
    );
  });

  it("an unreachable host, or one that never says its lamp is online, stops it too", () => {
    const unreachable = fleet(["--host", "pi@gone,pi@hall"], { "pi@hall": "ok hall 0.1.0" });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain(
      "stopped at pi@gone (1 of 2): cannot reach pi@gone with ssh (it must log in without questions: ssh-copy-id pi@gone); not updated: pi@hall",
    );
    const quiet = fleet(["--host", "pi@hall"], { "pi@hall": "quiet" });
    expect(quiet.code).toBe(1);
    expect(quiet.stderr).toContain(
      `stopped at pi@hall (1 of 1): install.sh there did not say the lamp is online with ${VERSION}`,
    );
  });

  it("--no-start installs without the check; --uninstall goes host by host", () => {
    const run = fleet(["--host", "pi@a,pi@b", "--no-start"], { "pi@a": "quiet", "pi@b": "quiet" });
    expect(run.code, run.stderr).toBe(0);
    expect(run.contacted).toEqual(["pi@a", "pi@b"]);
    const gone = fleet(["--hosts-file", path.join(fake, "hosts"), "--uninstall"], {
      "pi@attic": "quiet",
      "pi@porch": "quiet",
    });
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.contacted).toEqual(["pi@attic", "pi@porch"]);
    expect(gone.stdout).not.toContain("bundling");
  });

  it("refuses an empty host, a missing hosts file, and --await-version with --host (exit 2)", () => {
    expect(fleet(["--host", "pi@a,,pi@b"], {}).stderr).toContain("an empty host name between commas");
    const missing = fleet(["--hosts-file", path.join(fake, "nope")], {});
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--hosts-file ${path.join(fake, "nope")}: no such readable file`);
    expect(fleet(["--host", "pi@a", "--await-version", "1"], {}).code).toBe(2);
  });
});

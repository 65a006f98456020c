import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { startBroker } from "../helpers/broker.js";
import { ROOT } from "../helpers/process.js";
import { teardown } from "../helpers/teardown.js";

// lampctl speaks of what the user typed: its options by their names, its ranges, its words.
const run = promisify(execFile);
const LAMPCTL = path.join(ROOT, "dist", "cli", "lampctl.js");
const track = teardown("each");

async function lampctl(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [LAMPCTL, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { PATH: process.env.PATH ?? "", ...options.env },
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("lampctl's words", () => {
  it("--version prints the version", async () => {
    const { version } = (await import("../../package.json", { with: { type: "json" } })).default;
    expect(await lampctl(["--version"])).toEqual({ code: 0, stdout: `${version}\n`, stderr: "" });
  });

  it.each([
    [["--hue", "2"], "lampctl: --hue 2: allowed: a number from 0 to 1\n"],
    [["--saturation", "-1"], "lampctl: --saturation -1: allowed: a number from 0 to 1\n"],
    [["--brightness", "-0.1"], "lampctl: --brightness -0.1: allowed: a number from 0 to 1\n"],
    [["--transition", "4000"], "lampctl: --transition 4000: allowed: a number from 0 to 3600 (seconds)\n"],
    [["--hue", "red"], "lampctl: --hue red: allowed: a number from 0 to 1\n"],
    [["whatch"], 'lampctl: unexpected argument "whatch"; did you mean watch?\n'],
    [
      ["--id", "bad id!"],
      'lampctl: --id "bad id!": allowed: 1 to 64 of A-Z a-z 0-9 _ - (a lamp id, as in lamp/<id>/...)\n',
    ],
    [["ls", "--on"], "lampctl: ls takes no --on/--off/--hue/... options\n"],
    [["--group", "all"], "lampctl: --group needs a command: --on, --off, --hue, --brightness...\n"],
  ])("%j: one line naming what was typed, exit 2", async (args, line) => {
    expect(await lampctl(args)).toEqual({ code: 2, stdout: "", stderr: line });
  });

  it("no lamp answering and no --id: says the id tried is this machine's own and how to name another", async () => {
    const broker = track(await startBroker());
    const cwd = track(mkdtempSync(path.join(tmpdir(), "lampctl-words-")));
    const sysfs = track(mkdtempSync(path.join(tmpdir(), "lampctl-sysfs-")));
    // This machine's first network device, as the default LAMP_ID reads it.
    const nic = path.join(sysfs, "class", "net", "eth0");
    await import("node:fs").then((fs) => fs.mkdirSync(path.join(nic, "device"), { recursive: true }));
    writeFileSync(path.join(nic, "address"), "b8:27:eb:12:34:56\n");
    const result = await lampctl(["--url", broker.url, "--timeout", "1"], {
      cwd,
      env: { SYSFS_ROOT: sysfs },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no answer from the lamp on lamp/b827eb123456/changed");
    expect(result.stderr).toContain(
      "No id was given, so b827eb123456 is this machine's own default (its MAC address): name the lamp with --id ID or LAMP_ID (lampctl ls lists them)",
    );
    const named = await lampctl(["--url", broker.url, "--timeout", "1", "--id", "kitchen"], { cwd });
    expect(named.stderr).not.toContain("No id was given");
  });
});

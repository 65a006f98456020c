import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import {
  alive,
  type ExecOptions,
  type ExecResult,
  runCollected,
  sleep,
  succeeded,
} from "../helpers/process.js";

/**
 * A Debian booted with its own systemd in systemd-nspawn, on a throw-away overlay of a cached root.
 * The network is the host's, so a broker on the host's 127.0.0.1 is reachable from inside.
 */

const NSPAWN_RUN = "/run/systemd/nspawn";
const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export type { ExecOptions, ExecResult };

/** What a run records in `running.json`, so the next one can clean up after a killed runner. */
interface Leftover {
  /** The test process that owns the cache directory while it runs. */
  readonly ownerPid: number;
  readonly nspawnPid?: number;
  readonly initPid?: number;
  readonly merged?: string;
  readonly work?: string;
}

function run(command: string, args: string[]): ExecResult {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 30_000 });
  return { code: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

function mounted(dir: string): boolean {
  return run("mountpoint", ["-q", dir]).code === 0;
}

function unmount(dir: string): void {
  if (!mounted(dir)) return;
  if (run("umount", [dir]).code !== 0) run("umount", ["-l", dir]);
}

/** The container's init, as seen from the host: a child of nspawn whose own pid namespace calls it 1. */
function findInit(nspawnPid: number): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${entry}/status`, "utf8");
    } catch {
      continue;
    }
    const ppid = /^PPid:\s+(\d+)$/m.exec(status)?.[1];
    const nspid = /^NSpid:\s+([\d\s]+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
    if (Number(ppid) === nspawnPid && nspid && nspid.length > 1 && nspid.at(-1) === "1") return Number(entry);
  }
  return undefined;
}

export class Container {
  private constructor(
    readonly name: string,
    readonly root: string,
    private readonly work: string,
    private readonly nspawnPid: number,
    readonly initPid: number,
    private readonly leftoverFile: string,
    private readonly unmountNspawnRun: boolean,
    readonly consoleLog: string,
  ) {}

  /**
   * Takes the cache directory for this process. A container a previous run left behind (its runner
   * killed before the teardown) is killed and its mounts removed, so runs never pile up; a run that
   * is still going is refused rather than disturbed.
   */
  static claim(cacheDir: string): void {
    const file = path.join(cacheDir, "running.json");
    if (existsSync(file)) {
      const left = JSON.parse(readFileSync(file, "utf8")) as Leftover;
      if (left.ownerPid !== process.pid && alive(left.ownerPid)) {
        throw new Error(`another system test (pid ${left.ownerPid}) is using ${cacheDir}`);
      }
      Container.removeLeftover(left);
    }
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(file, JSON.stringify({ ownerPid: process.pid } satisfies Leftover));
  }

  private static removeLeftover(left: Leftover): void {
    for (const pid of [left.initPid, left.nspawnPid]) {
      if (pid === undefined || !alive(pid)) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.includes("systemd")) process.kill(pid, "SIGKILL");
    }
    if (left.merged) unmount(left.merged);
    if (left.work) rmSync(left.work, { recursive: true, force: true });
  }

  static async boot(options: {
    readonly image: string;
    readonly cacheDir: string;
    readonly binds?: readonly string[];
    readonly timeoutMs?: number;
  }): Promise<Container> {
    Container.claim(options.cacheDir);
    const leftoverFile = path.join(options.cacheDir, "running.json");

    const work = mkdtempSync("/var/tmp/lamp-systest.");
    const upper = path.join(work, "upper");
    const overlayWork = path.join(work, "work");
    const merged = path.join(work, "root");
    for (const dir of [upper, overlayWork, merged]) mkdirSync(dir);
    // The cached root stays pristine: each run writes into its own upper layer.
    const mount = run("mount", [
      "-t",
      "overlay",
      "overlay",
      "-o",
      `lowerdir=${options.image},upperdir=${upper},workdir=${overlayWork}`,
      merged,
    ]);
    if (mount.code !== 0) {
      rmSync(work, { recursive: true, force: true });
      throw new Error(`cannot mount an overlay for the container: ${mount.stderr}`);
    }

    // nspawn keeps its runtime state here; on a host not booted with systemd the directory may be
    // missing or read-only.
    let unmountNspawnRun = false;
    if (!mounted(NSPAWN_RUN)) {
      mkdirSync(NSPAWN_RUN, { recursive: true });
      if (run("mount", ["-t", "tmpfs", "tmpfs", NSPAWN_RUN]).code !== 0) {
        throw new Error(`cannot mount a tmpfs on ${NSPAWN_RUN}`);
      }
      unmountNspawnRun = true;
    }

    const name = `lamp-systest-${process.pid}`;
    const consoleLog = path.join(work, "console.log");
    const args = [
      "-D",
      merged,
      "--boot",
      "--register=no",
      "--keep-unit",
      `--machine=${name}`,
      ...(options.binds ?? []).map((bind) => `--bind=${bind}`),
    ];
    // A file, not a pipe: nspawn must never block on a reader that went away.
    const logFd = openSync(consoleLog, "w");
    const child = spawn("systemd-nspawn", args, { stdio: ["ignore", logFd, logFd], detached: true });
    child.unref();
    const nspawnPid = child.pid;
    if (nspawnPid === undefined) throw new Error("systemd-nspawn did not start");
    const leftover: Leftover = { ownerPid: process.pid, nspawnPid, merged, work };
    writeFileSync(leftoverFile, JSON.stringify(leftover));

    const deadline = Date.now() + (options.timeoutMs ?? 90_000);
    let initPid: number | undefined;
    while (initPid === undefined) {
      if (!alive(nspawnPid) || Date.now() > deadline) {
        const log = existsSync(consoleLog) ? readFileSync(consoleLog, "utf8").slice(-3000) : "";
        Container.removeLeftover(leftover);
        rmSync(leftoverFile, { force: true });
        throw new Error(`the container did not start:\n${log}`);
      }
      initPid = findInit(nspawnPid);
      if (initPid === undefined) await sleep(100);
    }
    writeFileSync(leftoverFile, JSON.stringify({ ...leftover, initPid }));
    const container = new Container(
      name,
      merged,
      work,
      nspawnPid,
      initPid,
      leftoverFile,
      unmountNspawnRun,
      consoleLog,
    );

    // degraded is fine: a container lacks some hardware a unit or two may want. Until systemd has
    // set up its socket, systemctl cannot ask it anything: retry until the deadline.
    let state = "";
    while (!/^(running|degraded)/.test(state)) {
      if (Date.now() > deadline) {
        const log = readFileSync(consoleLog, "utf8").slice(-3000);
        await container.destroy();
        throw new Error(`the container did not finish booting (${state || "no answer"}):\n${log}`);
      }
      const booted = await container.exec("systemctl is-system-running --wait", {
        timeoutMs: Math.max(1000, deadline - Date.now()),
      });
      state = booted.stdout.trim();
      if (!/^(running|degraded)/.test(state)) await sleep(250);
    }
    return container;
  }

  /** Runs a bash command line inside the container as root, with a clean environment. */
  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return runCollected(
      "nsenter",
      [
        "-t",
        String(this.initPid),
        "-a",
        "--",
        "/usr/bin/env",
        "-i",
        `PATH=${CONTAINER_PATH}`,
        "HOME=/root",
        "LANG=C.UTF-8",
        "SYSTEMD_COLORS=0",
        "/bin/bash",
        "-c",
        command,
      ],
      { ...options, onTimeout: "reject" },
    );
  }

  /** Like exec, but a non-zero exit is an error carrying the output. */
  async sh(command: string, options: ExecOptions = {}): Promise<string> {
    return succeeded(command, await this.exec(command, options));
  }

  /** Kills the whole container (its pid namespace dies with its init) and removes its overlay. */
  async destroy(): Promise<void> {
    if (alive(this.initPid)) process.kill(this.initPid, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (alive(this.nspawnPid) && Date.now() < deadline) await sleep(100);
    if (alive(this.nspawnPid)) process.kill(this.nspawnPid, "SIGKILL");
    await sleep(200);
    unmount(this.root);
    rmSync(this.work, { recursive: true, force: true });
    rmSync(this.leftoverFile, { force: true });
    if (this.unmountNspawnRun) unmount(NSPAWN_RUN);
  }
}

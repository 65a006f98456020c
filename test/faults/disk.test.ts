// A state directory that refuses writes while the agent runs: the lamp must keep working, the problem
// must be logged once (not on every change or retry), and saving must resume by itself once the disk
// takes writes again. Tests run as root here, where chmod stops nothing, so the disk is made to refuse
// for real where the kernel lets us (a full tmpfs, a read-only bind mount), and by putting a file where
// the directory was everywhere else.
import { execFileSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { showing, spawnAgent, white } from "../helpers/agent-process.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { teardown } from "../helpers/teardown.js";

interface Refusal {
  readonly name: string;
  /** The errno the agent should name. */
  readonly code: string;
  readonly stateFile: string;
  /** Whether the state saved before the fault stays readable while blocked. */
  readonly keepsFile: boolean;
  block(): void;
  unblock(): void;
  dispose(): void;
}

const mounts: string[] = [];

function mount(args: string[]): boolean {
  try {
    execFileSync("mount", args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** A 64 KiB tmpfs, filled to the last byte while blocked (needs root and CAP_SYS_ADMIN). */
function fullDisk(): Refusal | undefined {
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-full-"));
  if (process.getuid?.() !== 0 || !mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir])) {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  mounts.push(dir);
  const filler = path.join(dir, "filler");
  return {
    name: "a full disk (tmpfs)",
    code: "ENOSPC",
    stateFile: path.join(dir, "state.json"),
    keepsFile: true,
    block() {
      const fd = openSync(filler, "w");
      try {
        for (const size of [4096, 1]) {
          const chunk = Buffer.alloc(size, 1);
          try {
            for (;;) writeSync(fd, chunk);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    unblock: () => rmSync(filler),
    dispose: () => undefined,
  };
}

/** The state directory bind-mounted read-only over itself while blocked (root only). */
function readOnlyDirectory(): Refusal | undefined {
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-ro-"));
  if (process.getuid?.() !== 0 || !mount(["--bind", dir, dir])) {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  mounts.push(dir);
  return {
    name: "a read-only state directory (bind mount)",
    code: "EROFS",
    stateFile: path.join(dir, "state.json"),
    keepsFile: true,
    block: () => {
      if (!mount(["-o", "remount,bind,ro", dir])) throw new Error("cannot remount read-only");
    },
    unblock: () => {
      if (!mount(["-o", "remount,bind,rw", dir])) throw new Error("cannot remount read-write");
    },
    dispose: () => undefined,
  };
}

/** A regular file where the state directory was: works for any user, no privileges needed. */
function fileInTheWay(): Refusal {
  const root = mkdtempSync(path.join(tmpdir(), "lamp-nodir-"));
  const dir = path.join(root, "state");
  mkdirSync(dir);
  return {
    name: "a file where the state directory was",
    // mkdir -p of a path that is a file: "EEXIST: file already exists, mkdir ..."
    code: "EEXIST",
    stateFile: path.join(dir, "state.json"),
    keepsFile: false,
    block() {
      rmSync(dir, { recursive: true });
      writeFileSync(dir, "not a directory\n");
    },
    unblock() {
      rmSync(dir);
      mkdirSync(dir);
    },
    dispose: () => rmSync(root, { recursive: true, force: true }),
  };
}

const track = teardown("all");
let broker: TestBroker;
const refusals = [fullDisk(), readOnlyDirectory(), fileInTheWay()].filter((r) => r !== undefined);
track(() => {
  for (const dir of mounts.reverse()) {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  }
  for (const refusal of refusals) refusal.dispose();
});

beforeAll(async () => {
  broker = track(await startBroker());
});

const saved = (file: string) =>
  (JSON.parse(readFileSync(file, "utf8")) as { state: { brightness: number } }).state;

describe("a disk that refuses writes", () => {
  it.concurrent.each(refusals.map((r) => [r.name, r] as const))(
    "%s: the lamp keeps working, the problem is logged once, saving resumes",
    async (_name, refusal) => {
      const agent = track(spawnAgent(broker.url, { STATE_FILE: refusal.stateFile }));
      const base = `lamp/${agent.id}`;
      const watcher = track(await Recorder.connect(broker.url, [`state/${agent.id}`, `${base}/changed`]));
      await watcher.wait(`state/${agent.id}`, (t) => t === "1", 15_000);
      const command = async (brightness: number) => {
        await watcher.publish(`${base}/set_config`, white(brightness, "ui"));
        await watcher.wait(`${base}/changed`, (t) => JSON.parse(t).brightness === brightness);
        await vi.waitFor(() => expect(showing(agent.duties(), brightness)).toBe(true));
      };
      // Saving works before the fault: the store writes about a second after a change.
      await command(0.2);
      await vi.waitFor(() => expect(saved(refusal.stateFile).brightness).toBe(0.2), { timeout: 5000 });

      refusal.block();
      // Commands keep working over more than one retry period (10 s) of the store.
      for (const brightness of [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) {
        await command(brightness);
        await sleep(2000);
      }
      const problems = agent.logs.filter((l) => l.level >= 40 && /state/.test(l.msg));
      expect(problems, JSON.stringify(problems)).toHaveLength(1);
      const [problem] = problems;
      expect(problem?.msg).toMatch(/cannot (save|create)/);
      expect(JSON.stringify(problem)).toContain(refusal.code);
      expect(JSON.stringify(problem)).toContain(refusal.stateFile);
      // The last good save is untouched: no half-written file replaced it.
      if (refusal.keepsFile) expect(saved(refusal.stateFile).brightness).toBe(0.2);

      refusal.unblock();
      await vi.waitFor(
        () => expect(agent.logs.some((l) => l.msg === "saving the state works again")).toBe(true),
        {
          timeout: 15_000,
          interval: 200,
        },
      );
      expect(saved(refusal.stateFile).brightness).toBe(0.8);
      expect(agent.child.exitCode).toBeNull();
    },
    60_000,
  );
});

import * as fs from "node:fs";
import {
  chmodSync,
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
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { makeState } from "../../src/lamp/state.js";
import { StateStore } from "../../src/store.js";
import { captureLogger, LEVEL, silentLogger } from "../helpers/log.js";

// Pass-through spies, so a test can count how many times the store actually replaced the file.
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  return { ...actual, renameSync: vi.fn(actual.renameSync), mkdirSync: vi.fn(actual.mkdirSync) };
});
const rename = vi.mocked(fs.renameSync);
const mkdir = vi.mocked(fs.mkdirSync);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "lamp-store-"));
  rename.mockClear();
  mkdir.mockClear();
});
afterEach(() => {
  vi.useRealTimers();
  chmodSync(dir, 0o755);
  rmSync(dir, { recursive: true, force: true });
});

const red = makeState(true, 0, 1, 0.5);
const blue = makeState(false, 0.67, 1, 0.25);
const green = makeState(true, 0.33, 0.8, 1);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const isRoot = process.getuid?.() === 0;

async function until(predicate: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await sleep(5);
  }
}

/** Waits (on real I/O, not the faked clock) until the file has been replaced `count` times. */
async function written(count: number): Promise<void> {
  const end = performance.now() + 2000;
  while (rename.mock.calls.length < count) {
    if (performance.now() > end) throw new Error(`${rename.mock.calls.length} writes, not ${count}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("StateStore: load", () => {
  it("round-trips a state through the file", async () => {
    const file = path.join(dir, "sub", "state.json");
    const store = new StateStore(file, silentLogger());
    store.prepare();
    store.save(blue);
    await store.flush();
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ version: 1, state: blue });
    expect(new StateStore(file, silentLogger()).load()).toEqual(blue);
  });

  it("is undefined without a warning when there is no file yet", () => {
    const { logger, lines } = captureLogger();
    expect(new StateStore(path.join(dir, "none.json"), logger).load()).toBeUndefined();
    expect(lines).toEqual([]);
  });

  it.each([
    ["a torn file", '{"version": 1, "state": {"on": tr'],
    ["an empty file", ""],
    ["another version", JSON.stringify({ version: 2, state: red })],
    ["a value out of range", JSON.stringify({ version: 1, state: { ...red, brightness: 3 } })],
    ["a missing field", JSON.stringify({ version: 1, state: { on: true, brightness: 1 } })],
    ["not an object", "[]"],
  ])("reports %s and returns undefined (defaults)", (_name, text) => {
    const file = path.join(dir, "state.json");
    writeFileSync(file, text);
    const { logger, lines } = captureLogger();
    expect(new StateStore(file, logger).load()).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: LEVEL.warn,
      file,
      msg: "the saved state is corrupt; starting from defaults and replacing it",
    });
  });

  it("warns when the file cannot be read at all", () => {
    const file = path.join(dir, "state.json");
    mkdirSync(file); // a directory where the file should be: EISDIR
    const { logger, lines } = captureLogger();
    expect(new StateStore(file, logger).load()).toBeUndefined();
    expect(lines[0]?.level).toBe(LEVEL.warn);
  });

  it("quantises what it loads", () => {
    const file = path.join(dir, "state.json");
    writeFileSync(
      file,
      JSON.stringify({ version: 1, state: { on: true, color: { h: 0.123, s: 0.125 }, brightness: 1 } }),
    );
    expect(new StateStore(file, silentLogger()).load()).toEqual({
      on: true,
      color: { h: 0.12, s: 0.13 },
      brightness: 1,
    });
  });
});

describe("StateStore: save", () => {
  it("writes the first change at once, later ones at most once per interval, the newest", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const file = path.join(dir, "state.json");
    const store = new StateStore(file, silentLogger(), { intervalMs: 1000 });
    const saved = () => new StateStore(file, silentLogger()).load();
    // Two commands in one read from the socket: one write, of the newer.
    store.save(red);
    store.save(blue);
    await vi.advanceTimersByTimeAsync(0);
    await written(1);
    // The write goes on after its rename (the directory's fsync): let it end, or the next save waits.
    await store.flush();
    expect(saved()).toEqual(blue);
    await vi.advanceTimersByTimeAsync(500);
    store.save(green);
    store.save(red);
    await vi.advanceTimersByTimeAsync(499);
    expect(rename).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    await written(2);
    await store.flush();
    expect(saved()).toEqual(red);
    // Quiet for longer than the interval: the next change is written at once again.
    await vi.advanceTimersByTimeAsync(5000);
    store.save(green);
    await vi.advanceTimersByTimeAsync(0);
    await written(3);
    expect(saved()).toEqual(green);
    await store.flush();
    expect(rename).toHaveBeenCalledTimes(3);
  });

  it("flush writes what is pending at once, and nothing when nothing is", async () => {
    const file = path.join(dir, "state.json");
    const store = new StateStore(file, silentLogger(), { intervalMs: 60_000 });
    await store.flush();
    expect(existsSync(file)).toBe(false);
    store.save(red);
    await store.flush();
    expect(new StateStore(file, silentLogger()).load()).toEqual(red);
    await store.flush();
    expect(rename).toHaveBeenCalledTimes(1);
  });

  it("replaces the file atomically through a temp file it does not leave behind", async () => {
    const file = path.join(dir, "state.json");
    writeFileSync(file, "old");
    const store = new StateStore(file, silentLogger());
    store.save(red);
    await store.flush();
    expect(rename).toHaveBeenCalledTimes(1);
    const [from, to] = rename.mock.calls[0] ?? [];
    expect(to).toBe(file);
    expect(String(from)).not.toBe(file);
    expect(path.dirname(String(from))).toBe(dir);
    expect(readdirSync(dir)).toEqual(["state.json"]);
  });
});

describe("StateStore: the directory", () => {
  it("is made by prepare, not again on every save", async () => {
    const file = path.join(dir, "sub", "state.json");
    const store = new StateStore(file, silentLogger());
    store.prepare();
    expect(mkdir).toHaveBeenCalledTimes(1);
    mkdir.mockClear();
    store.save(red);
    await store.flush();
    store.save(blue);
    await store.flush();
    expect(mkdir).not.toHaveBeenCalled();
    expect(new StateStore(file, silentLogger()).load()).toEqual(blue);
  });

  it("is made again when it has gone since prepare, and the save goes through", async () => {
    const sub = path.join(dir, "sub");
    const file = path.join(sub, "state.json");
    const { logger, lines } = captureLogger();
    const store = new StateStore(file, logger);
    store.prepare();
    mkdir.mockClear();
    rmSync(sub, { recursive: true });
    store.save(red);
    await store.flush();
    expect(mkdir).toHaveBeenCalledTimes(1);
    expect(lines).toEqual([]);
    expect(new StateStore(file, silentLogger()).load()).toEqual(red);
    expect(readdirSync(sub)).toEqual(["state.json"]);
  });

  it("is made on the first save when prepare never ran", async () => {
    const file = path.join(dir, "a", "b", "state.json");
    const store = new StateStore(file, silentLogger());
    store.save(green);
    await store.flush();
    expect(new StateStore(file, silentLogger()).load()).toEqual(green);
  });
});

describe("StateStore: a disk that refuses writes", () => {
  it("logs once, keeps trying, and says so when saving works again", async () => {
    // A parent that is a regular file refuses writes even to root (chmod would not).
    const blocker = path.join(dir, "blocker");
    writeFileSync(blocker, "");
    const file = path.join(blocker, "state.json");
    const { logger, lines } = captureLogger();
    const store = new StateStore(file, logger, { intervalMs: 10, retryMs: 30 });
    store.save(red);
    await until(() => lines.length > 0);
    store.save(blue);
    await sleep(150); // several retries
    store.save(green);
    await sleep(100);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [LEVEL.error, "cannot save the state; will keep trying"],
    ]);
    rmSync(blocker);
    await until(() => lines.length > 1);
    expect(lines[1]).toMatchObject({ level: LEVEL.info, msg: "saving the state works again" });
    await store.flush();
    expect(new StateStore(file, silentLogger()).load()).toEqual(green);
    expect(readdirSync(blocker)).toEqual(["state.json"]);
  });

  it("prepare warns when the directory cannot be created, and the first failed write is not logged again", async () => {
    const blocker = path.join(dir, "blocker");
    writeFileSync(blocker, "");
    const { logger, lines } = captureLogger();
    const store = new StateStore(path.join(blocker, "state.json"), logger, { intervalMs: 10, retryMs: 1000 });
    store.prepare();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: LEVEL.warn });
    store.save(red);
    await store.flush();
    expect(lines).toHaveLength(1);
  });

  it.skipIf(isRoot)("handles a read-only directory (chmod 0555) the same way", async () => {
    const sub = path.join(dir, "ro");
    mkdirSync(sub);
    chmodSync(sub, 0o555);
    const { logger, lines } = captureLogger();
    const store = new StateStore(path.join(sub, "state.json"), logger, { intervalMs: 10, retryMs: 30 });
    store.save(red);
    await until(() => lines.length > 0);
    await sleep(100);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.level).toBe(LEVEL.error);
    chmodSync(sub, 0o755);
    await until(() => lines.length > 1);
    expect(lines[1]?.msg).toBe("saving the state works again");
    expect(new StateStore(path.join(sub, "state.json"), silentLogger()).load()).toEqual(red);
  });
});

describe("StateStore.prepare", () => {
  it("tidies temp files a kill left between write and rename, and nothing else", () => {
    const file = path.join(dir, "state.json");
    writeFileSync(path.join(dir, "state.json.4242.tmp"), '{"version":1,"st');
    writeFileSync(path.join(dir, "other.tmp"), "keep");
    writeFileSync(file, JSON.stringify({ version: 1, state: red }));
    const store = new StateStore(file, silentLogger());
    store.prepare();
    expect(readdirSync(dir).sort()).toEqual(["other.tmp", "state.json"]);
    expect(store.load()).toEqual(red);
  });
});

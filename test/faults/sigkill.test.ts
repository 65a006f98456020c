// SIGKILL (a power cut, an OOM kill) at random moments while commands stream in, 25 times, on one
// state file: the file is never torn, and each new agent starts from exactly what the file holds.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { spawnAgent } from "../helpers/agent-process.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { teardown } from "../helpers/teardown.js";

const KILLS = 25;

interface Saved {
  on: boolean;
  color: { h: number; s: number };
  brightness: number;
}

const track = teardown("all");
let broker: TestBroker;

beforeAll(async () => {
  broker = track(await startBroker());
});

// In [0, 1] and at two decimals, as the agent keeps them.
const unit = (x: unknown) =>
  typeof x === "number" && x >= 0 && x <= 1 && Math.abs(Math.round(x * 100) - x * 100) < 1e-9;

/** The file as the agent will read it; throws on anything torn or malformed. */
function readSaved(file: string): Saved {
  const parsed = JSON.parse(readFileSync(file, "utf8")) as { version: unknown; state: Saved };
  const { version, state } = parsed;
  if (
    version !== 1 ||
    typeof state.on !== "boolean" ||
    ![state.color.h, state.color.s, state.brightness].every(unit)
  ) {
    throw new Error(`unexpected content: ${JSON.stringify(parsed)}`);
  }
  return state;
}

describe("SIGKILL while commands stream in", () => {
  it(`never tears the state file, and the agent starts from it every time (${KILLS} kills)`, async () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-kill-")));
    const id = `kill${process.pid}`;
    const presence = `state/${id}`;
    const base = `lamp/${id}`;
    const file = path.join(dir, "state.json");
    const seen = track(await Recorder.connect(broker.url, [presence, `${base}/changed`]));
    let saves = 0;

    for (let kill = 1; kill <= KILLS; kill++) {
      // What the next agent must start with: the file's state, or the defaults when there is none yet.
      const expected: Saved = existsSync(file)
        ? readSaved(file)
        : { on: true, color: { h: 0, s: 0 }, brightness: 1 };
      seen.clear();
      const up = seen.next(presence, (t) => t === "1", 15_000);
      const agent = track(spawnAgent(broker.url, {}, { id, dir }));
      await up;
      // Its first state is the one it restored; a backlog queued after the last kill comes after it.
      const announced = await seen.wait(`${base}/changed`, (t) => JSON.parse(t).client === `lamp-${id}`);
      const { client: _client, ...started } = JSON.parse(announced.text) as Saved & { client: string };
      expect(started, `start ${kill}`).toEqual(expected);
      seen.clear();

      // Stream commands (each a change) and kill at a random moment: the store saves about once a
      // second, so over 25 kills some land before, some around and some during a save.
      let streaming = true;
      const stream = (async () => {
        for (let i = 0; streaming; i++) {
          const command = {
            on: i % 7 !== 0,
            color: { h: ((i * 37) % 100) / 100, s: ((i * 53) % 100) / 100 },
            brightness: (((i * 13) % 99) + 1) / 100,
            client: "stream",
          };
          await seen.publish(`${base}/set_config`, JSON.stringify(command));
          await sleep(3);
        }
      })();
      await sleep(200 + Math.random() * 1800);
      agent.child.kill("SIGKILL");
      const { signal } = await agent.exited;
      streaming = false;
      await stream;
      expect(signal).toBe("SIGKILL");
      if (existsSync(file)) {
        expect(() => readSaved(file), `file after kill ${kill}`).not.toThrow();
        saves++;
      }
      await seen.wait(presence, (t) => t === "0", 10_000);
    }
    // Kills at random moments from 0.2 s to 2 s: at least one came after a save.
    expect(saves).toBeGreaterThan(0);
  }, 150_000);

  it("a command after a quiet second is on disk at once: a power cut right after it loses nothing", async () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-kill-")));
    const id = `quiet${process.pid}`;
    const file = path.join(dir, "state.json");
    const seen = track(await Recorder.connect(broker.url, [`state/${id}`, `lamp/${id}/changed`]));
    const up = seen.next(`state/${id}`, (t) => t === "1", 15_000);
    const first = track(spawnAgent(broker.url, {}, { id, dir }));
    await up;
    await sleep(1500);
    const command = { on: true, color: { h: 0.66, s: 0.5 }, brightness: 0.3 };
    const applied = seen.next(`lamp/${id}/changed`, (t) => JSON.parse(t).client === "hand");
    await seen.publish(`lamp/${id}/set_config`, JSON.stringify({ ...command, client: "hand" }));
    await applied;
    // Saves are at most about once a second; this one must not wait for the second to pass.
    const deadline = Date.now() + 900;
    const onDisk = () => existsSync(file) && isDeepStrictEqual(readSaved(file), command);
    while (!onDisk() && Date.now() < deadline) await sleep(10);
    first.child.kill("SIGKILL");
    await first.exited;
    expect(onDisk(), "saved within 0.9 s of its state").toBe(true);

    seen.clear();
    const back = seen.next(`lamp/${id}/changed`, (t) => JSON.parse(t).client === `lamp-${id}`, 15_000);
    track(spawnAgent(broker.url, {}, { id, dir }));
    const { client: _client, ...restored } = JSON.parse((await back).text) as Saved & { client: string };
    expect(restored).toEqual(command);
  }, 60_000);
});

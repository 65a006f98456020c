import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { spawnAgent } from "../helpers/agent-process.js";
import { freePort, hasMosquitto, startBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { teardown } from "../helpers/teardown.js";

// The bundle as install.sh puts it on a Pi: dist/ alone, no node_modules beside it. scripts/build.mjs
// replaces MQTT.js's WebSocket transport with a stand-in that loads it on first use; ws:// must still work.
// dist/main.js runs the agent's bundle through V8's code cache (src/code-cache.ts).

const repo = fileURLToPath(new URL("../..", import.meta.url));
const track = teardown("each");

describe("the bundle (npm run build)", () => {
  it("runs from dist/ alone, with no node_modules to find", () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-bundle-")));
    cpSync(path.join(repo, "dist"), path.join(dir, "dist"), { recursive: true });
    const { version } = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")) as {
      version: string;
    };
    for (const entry of ["dist/main.js", "dist/cli/lampctl.js"]) {
      const run = spawnSync(process.execPath, [path.join(dir, entry), "--help"], {
        cwd: dir,
        encoding: "utf8",
      });
      expect(run.status, `${entry}: ${run.stderr}`).toBe(0);
    }
    const run = spawnSync(process.execPath, [path.join(dir, "dist/main.js"), "--version"], {
      encoding: "utf8",
    });
    expect(run.stdout).toBe(`${version}\n`);
  });

  it.skipIf(!hasMosquitto())(
    "connects over ws:// through the lazily loaded WebSocket transport",
    async () => {
      const ws = await freePort();
      const broker = track(
        await startBroker({
          listener: [
            "listener {port} 127.0.0.1",
            "allow_anonymous true",
            `listener ${ws} 127.0.0.1`,
            "protocol websockets",
          ],
        }),
      );
      const watcher = track(await Recorder.connect(broker.url, ["state/+"]));
      const agent = track(spawnAgent(`ws://127.0.0.1:${ws}`));
      const online = await watcher.wait(`state/${agent.id}`, (text) => text === "1", 15_000);
      expect(online.text).toBe("1");
    },
  );

  it.skipIf(!hasMosquitto())(
    "starts from V8's code cache: the first run writes it, the next one uses it",
    async () => {
      const broker = track(await startBroker());
      const watcher = track(await Recorder.connect(broker.url, ["state/+"]));
      const cache = path.join(track(mkdtempSync(path.join(tmpdir(), "lamp-cache-"))), "lamp-agent");
      const startLine = (agent: ReturnType<typeof spawnAgent>) =>
        agent.logs.find((line) => line.msg === "lamp-agent starting");

      const first = track(spawnAgent(broker.url, { CACHE_DIRECTORY: cache }));
      await watcher.wait(`state/${first.id}`, (text) => text === "1", 15_000);
      expect(startLine(first)).toMatchObject({ codeCache: "written" });
      // Written once the agent has run for 5 s.
      const deadline = Date.now() + 15_000;
      while (!(existsSync(cache) && readdirSync(cache).some((f) => f.endsWith(".v8cache")))) {
        expect(Date.now(), "no cache written within 15 s").toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await first.stop();

      const second = track(spawnAgent(broker.url, { CACHE_DIRECTORY: cache }));
      await watcher.wait(`state/${second.id}`, (text) => text === "1", 15_000);
      expect(startLine(second)).toMatchObject({ codeCache: "used" });
      expect(second.logs.filter((line) => line.level >= 50)).toEqual([]);
    },
    40_000,
  );

  it.skipIf(!hasMosquitto())(
    "loads none of Node's modules that a lamp on mqtt:// never uses",
    async () => {
      // What a start used to load for nothing (docs/performance.md): OpenSSL's crypto and tls, the ES
      // module loader's fs/promises and readline, child_process without systemd, pino's worker_threads
      // and sonic-boom's assert; MQTT.js's `debug`, with tty, while DEBUG is unset. Node's own list of
      // what it loaded, written as the agent exits.
      const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-modules-")));
      const list = path.join(dir, "modules.txt");
      const preload = path.join(dir, "list-modules.cjs");
      writeFileSync(
        preload,
        `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join("\\n")));\n`,
      );
      const broker = track(await startBroker());
      const watcher = track(await Recorder.connect(broker.url, ["state/+"]));
      const agent = track(spawnAgent(broker.url, { NODE_OPTIONS: `--require ${preload}` }));
      await watcher.wait(`state/${agent.id}`, (text) => text === "1", 15_000);
      await agent.stop();
      const loaded = readFileSync(list, "utf8").split("\n");
      expect(loaded).toContain("NativeModule net");
      const unwanted = [
        "NativeModule crypto",
        "NativeModule tls",
        "NativeModule fs/promises",
        "NativeModule internal/readline/interface",
        "NativeModule child_process",
        "NativeModule worker_threads",
        "NativeModule assert",
        "NativeModule internal/modules/esm/translators",
        "NativeModule tty",
      ];
      expect(loaded.filter((name) => unwanted.includes(name))).toEqual([]);
    },
    30_000,
  );
});

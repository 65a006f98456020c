import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { Board, buildImage, emulationUnavailable, GUEST_BROKER } from "./board.js";

/**
 * The agent's footprint on 32-bit ARM, as Raspberry Pi OS's armhf image runs it on a Pi Zero 2 W or 3:
 * Debian trixie armhf (Node.js 20) on QEMU's virt board with a Cortex-A15. Figures only, with the mock
 * driver (the pins are the arm64 board's business). Not in CI: a second board to build.
 *   LAMP_EMU_ARMHF=1 sudo -E npm run test:emulated
 */

const repo = fileURLToPath(new URL("../..", import.meta.url));
const cacheDir = process.env.LAMP_EMU_CACHE ?? "/var/cache/lamp-agent-emulated";
const LAMP_ID = "armhf";
const PRESENCE = `state/${LAMP_ID}`;
const DIR = "/root/lamp-agent";

const skip =
  process.env.LAMP_EMU_ARMHF === "1"
    ? emulationUnavailable("armhf")
    : "the 32-bit board runs only with LAMP_EMU_ARMHF=1";
if (skip) process.stderr.write(`test:emulated (armhf) skipped: ${skip}\n`);

let board: Board;
let broker: TestBroker;
let recorder: Recorder;
let runDir: string;
const figures: string[] = [];

describe.skipIf(skip)("lamp-agent on an emulated 32-bit (armhf) board", () => {
  beforeAll(async () => {
    Board.claim(cacheDir);
    const image = await buildImage("build-board.sh", [], {
      LAMP_EMU_CACHE: cacheDir,
      LAMP_EMU_ARCH: "armhf",
    });
    execFileSync("npm", ["run", "build", "--silent"], { cwd: repo, stdio: "ignore" });
    broker = await startBroker();
    recorder = await Recorder.connect(broker.url, [PRESENCE]);
    runDir = mkdtempSync(path.join(tmpdir(), "lamp-armhf-"));
    board = await Board.boot(cacheDir, {
      image,
      runDir,
      brokerPort: broker.port,
      model: "Raspberry Pi 3 Model B Rev 1.2",
      pwm: [],
      arch: "armhf",
    });
  });

  afterAll(async () => {
    await board?.destroy();
    await recorder?.end().catch(() => {});
    await broker?.close().catch(() => {});
    if (runDir) rmSync(runDir, { recursive: true, force: true });
    Board.release(cacheDir);
    process.stderr.write(`--- figures (armhf, emulated)\n${figures.join("\n")}\n`);
  });

  it("records the agent's idle RSS on 32-bit ARM, beside Node.js's own", async () => {
    expect(await board.sh("uname -m")).toMatch(/^armv7/);
    await board.sh(`mkdir -p ${DIR} && tar -C ${DIR} -xzf -`, {
      input: execFileSync("tar", ["-C", repo, "-czf", "-", "dist"], { maxBuffer: 256 * 1024 * 1024 }),
      timeoutMs: 120_000,
    });
    const env = [
      `LAMP_ID=${LAMP_ID}`,
      `MQTT_URL=${GUEST_BROKER}`,
      "GPIO_DRIVER=mock",
      "HA_DISCOVERY=false",
      "STATE_FILE=/tmp/lamp-armhf/state.json",
      "LOG_FORMAT=json",
    ].join(" ");
    const online = recorder.next(PRESENCE, (text) => text === "1", 180_000);
    // As the unit starts it (lamp-agent.service's ExecStart); nohup and env exec, so $! is node.
    await board.sh(
      `mkdir -p /tmp/lamp-armhf && cd /tmp/lamp-armhf && { nohup env ${env} node --max-semi-space-size=4 ${DIR}/dist/main.js > log 2>&1 & echo $! > pid; }`,
    );
    await online.catch(async (error: unknown) => {
      throw new Error(`${String(error)}\n${await board.sh("cat /tmp/lamp-armhf/log")}`);
    });
    // Idle: connected, nothing to do, past the first moments' garbage.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const agentKiB = Number(
      await board.sh("awk '/VmRSS/ {print $2}' /proc/$(cat /tmp/lamp-armhf/pid)/status"),
    );
    const bareKiB = Number(
      await board.sh(
        "node -e 'setTimeout(() => {}, 60000)' & pid=$!; sleep 5; awk '/VmRSS/ {print $2}' /proc/$pid/status; kill $pid",
      ),
    );
    const node = (await board.sh("node -v")).trim();
    figures.push(
      `node ${node} (armhf): idle RSS of the agent ${(agentKiB / 1024).toFixed(1)} MiB; of an idle \`node -e\` ${(bareKiB / 1024).toFixed(1)} MiB`,
    );
    expect(agentKiB).toBeGreaterThan(bareKiB);
  });
});

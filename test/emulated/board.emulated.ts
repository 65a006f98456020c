import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { levelsFor, toDuty } from "../../src/lamp/colour.js";
import { makeState } from "../../src/lamp/state.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { Board, buildImage, emulationUnavailable, GUEST_BROKER, type PerPinPwm } from "./board.js";

/**
 * The drivers on a real Linux kernel: Debian's arm64 kernel on QEMU's virt board, the kernel's own
 * pwm-gpio driver bound to the PL061's lines with device-tree nodes named as on a Pi, the agent installed
 * by scripts/install.sh and running as its sandboxed service, talking to a Mosquitto on the host.
 * Run with `npm run test:emulated` as root; see docs/deployment.md.
 */

const repo = fileURLToPath(new URL("../..", import.meta.url));
const cacheDir = process.env.LAMP_EMU_CACHE ?? "/var/cache/lamp-agent-emulated";
const LAMP_ID = "emulated";
const PRESENCE = `state/${LAMP_ID}`;
const COMMAND = `lamp/${LAMP_ID}/set_config`;
const CHANGED = `lamp/${LAMP_ID}/changed`;
const UNIT = "lamp-agent.service";
const CLONE = "/root/lamp-agent";
// The LAMPI wiring (red 19, green 26, blue 13), each pin on a PL061 line of its own.
const PWM: readonly PerPinPwm[] = [
  { pin: 19, line: 0 },
  { pin: 26, line: 1 },
  { pin: 13, line: 2 },
];
// A PL061 line no pwm-gpio node holds (line 3 is the virt board's power button).
const FREE_LINE = 4;
const PERIOD_NS = 1_000_000;
const GAMMA = 2.2;
// The hand-run onoff agent: its own id, and the PL061 line it drives as "BCM pin" FREE_LINE.
const ONOFF_ID = "emulated-onoff";

interface Colour {
  readonly h: number;
  readonly s: number;
}
const full = ({ h, s }: Colour) => ({ on: true, color: { h, s }, brightness: 1 });
const RED: Colour = { h: 0, s: 1 };
// Hue and saturation are fractions (LAMPI's HSV). Two decimals cannot say 1/3 or 2/3: green is hue
// 0.33, which leaves red a glimmer (0.02 before gamma, 0.018% duty after it).
const GREEN: Colour = { h: 1 / 3, s: 1 };
const BLUE: Colour = { h: 2 / 3, s: 1 };
const WHITE: Colour = { h: 0, s: 0 };
const YELLOW: Colour = { h: 1 / 6, s: 1 };

/** What the agent's pipeline (quantise, HSV, gamma, ns) should leave in each channel's duty_cycle. */
function dutiesFor(colour: Colour, brightness = 1): number[] {
  const state = makeState(true, colour.h, colour.s, brightness);
  return levelsFor(state, 3).map((level) => Math.round(toDuty(level, GAMMA) * PERIOD_NS));
}

/**
 * Issue 22: the unit's Node flags chosen on this board. Off by default (about a minute and a half per
 * set and round); LAMP_EMU_FLAG_SETS lists `;`-separated flag sets, the unit's own among them.
 */
const FLAG_SETS = process.env.LAMP_EMU_FLAG_SETS?.split(";").map((set) => set.trim());
const FLAG_ROUNDS = 2;

const skip = emulationUnavailable("arm64");
if (skip) process.stderr.write(`test:emulated skipped: ${skip}\n`);

let board: Board;
let broker: TestBroker;
let recorder: Recorder;
let runDir: string;
let onoffDir: string;
const figures: string[] = [];

/** The clone an operator would have after `npm run build`: tracked and new files, and dist/. */
function cloneTarball(): Buffer {
  const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: repo,
  })
    .toString()
    .split("\0")
    .filter((file) => file !== "" && existsSync(path.join(repo, file)));
  return execFileSync("tar", ["-C", repo, "--null", "-T", "-", "-czf", "-", "dist"], {
    input: listed.join("\0"),
    maxBuffer: 512 * 1024 * 1024,
  });
}

/** `/sys/devices/platform/pwm_gpio@<pin hex>/pwm/pwmchipN`, found by its device, as the agent finds it. */
async function chipOf(pin: number): Promise<string> {
  return (await board.sh(`echo /sys/devices/platform/pwm_gpio@${pin.toString(16)}/pwm/pwmchip*`)).trim();
}

interface ChannelFiles {
  readonly exported: boolean;
  readonly enable: string;
  readonly duty: number;
}

/** Each LAMPI pin's channel as sysfs shows it, read in one ssh round trip (each costs ~0.5 s here). */
async function channels(): Promise<ChannelFiles[]> {
  const script = PWM.map(
    ({ pin }) =>
      `p=$(echo /sys/devices/platform/pwm_gpio@${pin.toString(16)}/pwm/pwmchip*/pwm0); ` +
      `if [ -d $p ]; then echo "1 $(cat $p/enable) $(cat $p/duty_cycle)"; else echo "0 - 0"; fi`,
  ).join("; ");
  return (await board.sh(script))
    .trim()
    .split("\n")
    .map((line) => {
      const [exported, enable = "", duty = "0"] = line.split(" ");
      return { exported: exported === "1", enable, duty: Number(duty) };
    });
}

async function duties(): Promise<number[]> {
  return (await channels()).map((channel) => channel.duty);
}

const SAMPLES = "/run/lamp-samples";

/**
 * Reads the three duty cycles in a loop on the board itself (an ssh round trip per sample would miss a
 * one-second step under emulation), until stopSampler(). Lines where a channel is not exported are kept
 * as 0 for that pin.
 */
async function startSampler(): Promise<void> {
  const files = (await Promise.all(PWM.map(async ({ pin }) => `${await chipOf(pin)}/pwm0/duty_cycle`))).join(
    " ",
  );
  await board.sh(
    `rm -f ${SAMPLES}.stop; nohup sh -c 'while [ ! -e ${SAMPLES}.stop ]; do for f in ${files}; do printf "%s " "$(cat $f 2>/dev/null || echo 0)"; done; echo; done' > ${SAMPLES} 2>/dev/null & echo $! > ${SAMPLES}.pid`,
  );
}

async function stopSampler(): Promise<number[][]> {
  // By its pid: a pattern would also match the shell running this very loop.
  await board.sh(
    `touch ${SAMPLES}.stop; while kill -0 $(cat ${SAMPLES}.pid) 2>/dev/null; do sleep 0.1; done`,
  );
  return (await board.sh(`cat ${SAMPLES}`))
    .trim()
    .split("\n")
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((d) => d.length === PWM.length);
}

/** The longest prefix of `expected` that occurs in `seen` in order (other states may come between). */
function inOrder(seen: number[][], expected: number[][]): number[][] {
  let next = 0;
  for (const state of seen) {
    if (next < expected.length && JSON.stringify(state) === JSON.stringify(expected[next])) next++;
  }
  return expected.slice(0, next);
}

/** The samples with consecutive repeats folded: the sequence of states the pins went through. */
function distinct(samples: number[][]): number[][] {
  return samples.filter((d, i) => i === 0 || JSON.stringify(d) !== JSON.stringify(samples[i - 1]));
}

async function mainPid(): Promise<number> {
  return Number((await board.sh(`systemctl show -p MainPID --value ${UNIT}`)).trim());
}

async function command(payload: object): Promise<void> {
  const changed = recorder.next(CHANGED, (text) => text.includes('"client":"emulated-test"'), 30_000);
  await recorder.publish(COMMAND, JSON.stringify({ ...payload, client: "emulated-test" }), { qos: 1 });
  await changed;
}

describe.skipIf(skip)("lamp-agent on an emulated arm64 board with a real kernel", () => {
  beforeAll(async () => {
    Board.claim(cacheDir);
    const image = await buildImage("build-board.sh", [], { LAMP_EMU_CACHE: cacheDir });
    onoffDir = await buildImage("build-onoff.sh", [image], {});
    execFileSync("npm", ["run", "build", "--silent"], { cwd: repo, stdio: "ignore" });
    broker = await startBroker();
    if (broker.kind !== "mosquitto") throw new Error("the emulated test needs mosquitto on the host");
    recorder = await Recorder.connect(broker.url, [PRESENCE, CHANGED]);
    runDir = mkdtempSync(path.join(tmpdir(), "lamp-emulated-"));
    board = await Board.boot(cacheDir, {
      image,
      runDir,
      brokerPort: broker.port,
      model: "Raspberry Pi 4 Model B Rev 1.5",
      pwm: PWM,
    });
  });

  afterAll(async () => {
    if (board) {
      const journal = await board.exec(`journalctl -u ${UNIT} -n 40 --no-pager`).catch(() => undefined);
      if (journal) process.stderr.write(`--- last journal lines of ${UNIT}\n${journal.stdout}\n`);
      await board.destroy();
    }
    await recorder?.end().catch(() => {});
    await broker?.close().catch(() => {});
    if (runDir) rmSync(runDir, { recursive: true, force: true });
    Board.release(cacheDir);
    process.stderr.write(`--- figures (arm64, emulated)\n${figures.join("\n")}\n`);
  });

  it("boots Debian's arm64 kernel; udev loads pwm-gpio for the Pi-named nodes", async () => {
    expect(await board.sh("uname -m")).toBe("aarch64\n");
    expect(await board.sh("tr -d '\\0' < /proc/device-tree/model")).toBe("Raspberry Pi 4 Model B Rev 1.5");
    // Nothing loaded it by hand: udev matched the nodes' compatible with the module's alias.
    expect(await board.sh("lsmod")).toMatch(/^pwm_gpio\s/m);
    for (const { pin } of PWM) {
      const chip = await chipOf(pin);
      expect(chip).toMatch(/\/pwmchip\d+$/);
      expect(await board.sh(`cat ${chip}/npwm`)).toBe("1\n");
      expect(await board.sh(`readlink -f ${chip}/device/of_node`)).toBe(
        `/sys/firmware/devicetree/base/pwm_gpio@${pin.toString(16)}\n`,
      );
    }
  });

  it("the kernel's PWM core: EBUSY for a second export, EINVAL for a duty above the period once enabled", async () => {
    const chip = await chipOf(19);
    const out = await board.exec(
      [
        `echo 0 > ${chip}/export`,
        `echo 0 > ${chip}/export 2>/tmp/busy; cat /tmp/busy`,
        `echo ${PERIOD_NS} > ${chip}/pwm0/period`,
        // Refused only once enabled: a disabled channel takes any duty (6.12).
        `echo 1 > ${chip}/pwm0/enable`,
        `echo ${PERIOD_NS + 1} > ${chip}/pwm0/duty_cycle 2>/tmp/inval; cat /tmp/inval`,
        `echo 0 > ${chip}/pwm0/enable`,
        `echo 0 > ${chip}/unexport`,
      ].join("; "),
    );
    expect(out.stdout).toMatch(/Device or resource busy/);
    expect(out.stdout).toMatch(/Invalid argument/);
    expect(await board.sh(`test ! -e ${chip}/pwm0 && echo gone`)).toBe("gone\n");
  });

  it("the PL061's lines through the kernel's sysfs GPIO, with a dynamic base", async () => {
    const chip = (await board.sh("grep -l 9030000.pl061 /sys/class/gpio/gpiochip*/label")).trim();
    const base = Number(await board.sh(`cat ${path.dirname(chip)}/base`));
    expect(base).toBeGreaterThan(0);
    const gpio = base + FREE_LINE;
    const out = await board.sh(
      [
        `echo ${gpio} > /sys/class/gpio/export`,
        `echo out > /sys/class/gpio/gpio${gpio}/direction`,
        `echo 1 > /sys/class/gpio/gpio${gpio}/value`,
        `cat /sys/class/gpio/gpio${gpio}/value`,
        `echo 0 > /sys/class/gpio/gpio${gpio}/value`,
        `cat /sys/class/gpio/gpio${gpio}/value`,
        `echo ${gpio} > /sys/class/gpio/unexport`,
      ].join(" && "),
    );
    expect(out).toBe("1\n0\n");
  });

  it("installs with scripts/install.sh as an operator would and starts as the sandboxed service", async () => {
    // The bundle newer than its sources, as after the operator's own `npm run build` on the board.
    await board.sh(`mkdir -p ${CLONE} && tar -C ${CLONE} -xzf - && find ${CLONE}/dist -exec touch {} +`, {
      input: cloneTarball(),
      timeoutMs: 120_000,
    });
    const env = [
      `LAMP_ID=${LAMP_ID}`,
      `MQTT_URL=${GUEST_BROKER}`,
      "MQTT_KEEPALIVE=5",
      "GPIO_DRIVER=sysfs-pwm",
      "LED_PINS=19,26,13",
      `PWM_FREQUENCY=${1e9 / PERIOD_NS}`,
      `GAMMA=${GAMMA}`,
      "HA_DISCOVERY=false",
      "LOG_LEVEL=debug",
      "",
    ].join("\n");
    await board.sh("mkdir -p /etc/lamp-agent && cat > /etc/lamp-agent/lamp-agent.env", { input: env });
    const online = recorder.next(PRESENCE, (text) => text === "1", 180_000);
    const install = await board.exec(`cd ${CLONE} && scripts/install.sh`, { timeoutMs: 5 * 60_000 });
    expect(install.code, `${install.stdout}\n${install.stderr}`).toBe(0);
    await online;
    const pid = await mainPid();
    const uid = (await board.sh("id -u lamp-agent")).trim();
    const status = await board.sh(`cat /proc/${pid}/status`);
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"));
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
  });

  it("the guest's udev applies hardware/99-lamp-agent.rules to the real export events", async () => {
    for (const { pin } of PWM) {
      const chip = await chipOf(pin);
      expect(await board.sh(`stat -c '%G %A' ${chip}/export ${chip}/unexport`)).toBe(
        "gpio --w--w----\ngpio --w--w----\n",
      );
      // Exported by the unprivileged agent: udev handed the channel's files to the group.
      expect(await board.sh(`stat -c '%G %A' ${chip}/pwm0/duty_cycle ${chip}/pwm0/enable`)).toMatch(
        /^gpio -rw-rw-r--\ngpio -rw-rw-r--\n$/,
      );
    }
  });

  it("commands over MQTT (and lampctl on the board) set the duty the kernel reports for each LAMPI pin", async () => {
    await command(full(RED));
    expect(await duties()).toEqual([PERIOD_NS, 0, 0]);
    await command(full(GREEN));
    expect(await duties()).toEqual(dutiesFor(GREEN));
    await command(full(BLUE));
    expect(await duties()).toEqual(dutiesFor(BLUE));
    await command(full(WHITE));
    expect(await duties()).toEqual([PERIOD_NS, PERIOD_NS, PERIOD_NS]);
    // Dimmed: gamma-corrected, not linear (half brightness is about 22% duty).
    await command({ ...full(WHITE), brightness: 0.5 });
    const half = dutiesFor(WHITE, 0.5);
    expect(half[0]).toBeGreaterThan(0.2 * PERIOD_NS);
    expect(half[0]).toBeLessThan(0.25 * PERIOD_NS);
    expect(await duties()).toEqual(half);
    expect((await channels()).map((channel) => channel.enable)).toEqual(["1", "1", "1"]);
    // Off, from lampctl on the board as the operator runs it (the installed configuration, with sudo):
    // each channel still exported and enabled, at duty 0 (no glitch when it lights again).
    const off = await board.exec("cd /tmp && lampctl --off", { timeoutMs: 120_000 });
    expect(off.code, `${off.stdout}\n${off.stderr}`).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ on: false, client: "lampctl" });
    expect(await channels()).toEqual(PWM.map(() => ({ exported: true, enable: "1", duty: 0 })));
  });

  it("lamp-agent --check on this board: every pin on its pwm-gpio chip, exit 0; the default id; no second agent", async () => {
    // By hand as the operator would, with sudo: it reads the installed configuration (root's file).
    const check = await board.exec("cd /tmp && lamp-agent --check", { timeoutMs: 120_000 });
    expect(check.code, `${check.stdout}\n${check.stderr}`).toBe(0);
    for (const { pin } of PWM) expect(check.stdout).toMatch(new RegExp(`\\b${pin}\\b.*pwm-gpio`));
    // Unset, LAMP_ID is the board's first network device's MAC (QEMU's default for its first NIC).
    const blank = await board.exec("mkdir -p /tmp/blank && cd /tmp/blank && : > .env && lamp-agent --check", {
      timeoutMs: 120_000,
    });
    expect(blank.stdout).toMatch(/^\s*LAMP_ID=525400123456\s+# default$/m);
    // Run by hand beside the service, the agent refuses rather than fight it for the pins.
    const byHand = await board.exec("cd /tmp && lamp-agent", { timeoutMs: 120_000 });
    expect(byHand.code, `${byHand.stdout}\n${byHand.stderr}`).toBe(1);
    expect(byHand.stderr).toContain("lamp-agent.service is running and drives this lamp");
  });

  it("the wiring test shows red, green, blue, white on the real pins and restores the state", async () => {
    await command(full(YELLOW));
    const before = await duties();
    expect(before).toEqual(dutiesFor(YELLOW));
    await startSampler();
    const result = await board.exec("cd /tmp && lamp-agent --test", { timeoutMs: 120_000 });
    const seen = await stopSampler();
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    // In this order, with whatever the pins pass through between two steps (channels are written one by one).
    const steps = [before, dutiesFor(RED), dutiesFor(GREEN), dutiesFor(BLUE), dutiesFor(WHITE), before];
    expect(inOrder(distinct(seen), steps)).toEqual(steps);
    // It went through the running agent (systemd's invocation link), not around it.
    expect(result.stdout).not.toMatch(/the agent is not running/);
  });

  it("SIGTERM (systemctl stop) disables and unexports what the agent exported", async () => {
    const offline = recorder.next(PRESENCE, (text) => text === "0", 60_000);
    await board.sh(`systemctl stop ${UNIT}`, { timeoutMs: 90_000 });
    await offline;
    expect((await channels()).map((channel) => channel.exported)).toEqual([false, false, false]);
  });

  it("kill -9: the Will, systemd restarts it and the pins show the restored state first", async () => {
    const blue = dutiesFor(BLUE);
    const started = recorder.next(PRESENCE, (text) => text === "1", 180_000);
    await board.sh(`systemctl start ${UNIT}`, { timeoutMs: 90_000 });
    await started;
    await command(full(BLUE));
    const before = await mainPid();
    const will = recorder.next(PRESENCE, (text) => text === "0", 60_000);
    const back = recorder.next(PRESENCE, (text) => text === "1", 180_000);
    await startSampler();
    await board.sh(`kill -9 ${before}`);
    await will;
    await back;
    const seen = await stopSampler();
    expect(await mainPid()).not.toBe(before);
    // Whatever the restarted agent did to take the pins over, nothing but the saved blue ever lit.
    expect(distinct(seen.filter((d) => d.some((x) => x > 0)))).toEqual([blue]);
    expect(await duties()).toEqual(blue);
    // The restarted agent took over channels its killed predecessor exported: it cannot tell them from
    // a boot script's, so when stopped it switches them off and leaves them exported, as it found them.
    const offline = recorder.next(PRESENCE, (text) => text === "0", 60_000);
    await board.sh(`systemctl stop ${UNIT}`, { timeoutMs: 90_000 });
    await offline;
    const adopted: ChannelFiles = { exported: true, enable: "0", duty: 0 };
    expect(await channels()).toEqual([adopted, adopted, adopted]);
  });

  it("onoff: the agent's onoff driver switches a PL061 line and the kernel reads it back", async () => {
    // What install.sh leaves for GPIO_DRIVER=onoff, with epoll cross-built (build-onoff.sh): the board
    // has no compiler and no registry.
    await board.sh("tar -C /opt/lamp-agent -xf - node_modules", {
      input: execFileSync("tar", ["-C", onoffDir, "-cf", "-", "node_modules"]),
      timeoutMs: 120_000,
    });
    // The virt board's PL061 is not a Pi's `pinctrl-*` bank, so the agent is shown one by the name it
    // looks for, with the PL061's real base and size. Only that lookup reads this copy: onoff itself
    // exports, drives and unexports the real /sys/class/gpio, and the copy links to its export files.
    const chip = path.dirname(
      (await board.sh("grep -l 9030000.pl061 /sys/class/gpio/gpiochip*/label")).trim(),
    );
    const base = Number(await board.sh(`cat ${chip}/base`));
    const gpio = `/sys/class/gpio/gpio${base + FREE_LINE}`;
    const lookup = "/run/lamp-onoff-sysfs";
    await board.sh(
      [
        `rm -rf ${lookup} && mkdir -p ${lookup}/firmware/devicetree/base ${lookup}/class/gpio/gpiochip${base}`,
        `cp /proc/device-tree/model ${lookup}/firmware/devicetree/base/model`,
        `cd ${lookup}/class/gpio/gpiochip${base} && echo pinctrl-bcm2711 > label && cp ${chip}/base ${chip}/ngpio .`,
        // The real export files: the agent's check that it may write them is the real one.
        `ln -s /sys/class/gpio/export /sys/class/gpio/unexport ${lookup}/class/gpio/`,
      ].join(" && "),
    );
    const env = [
      `LAMP_ID=${ONOFF_ID}`,
      `MQTT_URL=${GUEST_BROKER}`,
      "GPIO_DRIVER=onoff",
      `LED_PINS=${FREE_LINE}`,
      `SYSFS_ROOT=${lookup}`,
      "STATE_FILE=/tmp/lamp-onoff/state.json",
      "HA_DISCOVERY=false",
    ].join(" ");
    const presence = `state/${ONOFF_ID}`;
    const changed = `lamp/${ONOFF_ID}/changed`;
    const watch = await Recorder.connect(broker.url, [presence, changed]);
    try {
      // Presence comes first (CONTRACT section 2), before the agent subscribes; its first state comes after
      // the subscription, and the broker handles one client's packets in order: then commands reach it.
      // (Waiting for that state also keeps it from being taken for the answer to the first command.)
      const online = Promise.all([
        watch.next(presence, (text) => text === "1", 90_000),
        watch.next(changed, () => true, 90_000),
      ]);
      // Unprivileged, as the service runs: the gpio group and the udev rule's sysfs GPIO half.
      await board.sh(
        `mkdir -p /tmp/lamp-onoff && chown lamp-agent /tmp/lamp-onoff && cd /tmp/lamp-onoff && { ` +
          `nohup runuser -u lamp-agent -- env ${env} lamp-agent > /tmp/lamp-onoff/log 2>&1 & }`,
      );
      await online.catch(async (error: unknown) => {
        throw new Error(`${String(error)}\n${await board.sh("cat /tmp/lamp-onoff/log")}`);
      });
      const set = async (on: boolean) => {
        const answered = watch.next(changed, (text) => text.includes(`"on":${on}`), 30_000);
        await watch.publish(
          `lamp/${ONOFF_ID}/set_config`,
          JSON.stringify({ on, brightness: 1, client: "emulated-test" }),
          { qos: 1 },
        );
        await answered;
        return (await board.sh(`cat ${gpio}/direction ${gpio}/value`)).split("\n").slice(0, 2);
      };
      // No saved state: the lamp starts on (DEFAULT_STATE), so the line is already an output at 1.
      expect((await board.sh(`cat ${gpio}/direction ${gpio}/value`)).split("\n").slice(0, 2)).toEqual([
        "out",
        "1",
      ]);
      expect(await set(false)).toEqual(["out", "0"]);
      expect(await set(true)).toEqual(["out", "1"]);
      expect(await set(false)).toEqual(["out", "0"]);
      expect(await board.sh(`stat -c %G ${gpio}/value`)).toBe("gpio\n");
      const offline = watch.next(presence, (text) => text === "0", 60_000);
      await board.sh(
        "kill -TERM $(pgrep -u lamp-agent -f 'node.*lamp-agent') && while pgrep -u lamp-agent node >/dev/null; do sleep 0.2; done",
        {
          timeoutMs: 90_000,
        },
      );
      await offline;
      // Switched off and handed back to the kernel.
      expect(await board.sh(`test -e ${gpio} && echo exported || echo unexported`)).toBe("unexported\n");
    } finally {
      await watch.end().catch(() => {});
    }
  });

  it("records idle RSS and start-to-presence as a ratio to `node -e ''` on this board", async () => {
    // Timed from the host, each minus an ssh round trip that runs nothing: only the ratio means anything.
    const timedSsh = async (command: string) => {
      const started = performance.now();
      await board.sh(command);
      return performance.now() - started;
    };
    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const idle = median([await timedSsh("true"), await timedSsh("true"), await timedSsh("true")]);
    const nodeRuns: number[] = [];
    for (let i = 0; i < 3; i++) nodeRuns.push((await timedSsh("node -e ''")) - idle);
    const presenceRuns: number[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) {
        const offline = recorder.next(PRESENCE, (text) => text === "0", 60_000);
        await board.sh(`systemctl stop ${UNIT}`, { timeoutMs: 90_000 });
        await offline;
      }
      const online = recorder.next(PRESENCE, (text) => text === "1", 180_000);
      const started = performance.now();
      await board.sh(`systemctl start --no-block ${UNIT}`);
      await online;
      presenceRuns.push(performance.now() - started - idle);
    }
    const nodeMs = median(nodeRuns);
    const presenceMs = median(presenceRuns);
    // Idle: connected, nothing to do, past the first moments' garbage.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const rssKiB = Number((await board.sh(`grep VmRSS /proc/${await mainPid()}/status`)).split(/\s+/)[1]);
    // The floor: Node.js itself, idle, on the same board (Debian's node links libnode.so).
    const bareKiB = Number(
      await board.sh(
        "node -e 'setTimeout(() => {}, 60000)' & pid=$!; sleep 5; awk '/VmRSS/ {print $2}' /proc/$pid/status; kill $pid",
      ),
    );
    figures.push(
      `idle RSS of the agent: ${(rssKiB / 1024).toFixed(1)} MiB; of an idle \`node -e\`: ${(bareKiB / 1024).toFixed(1)} MiB`,
      `node -e '': ${nodeMs.toFixed(0)} ms; start to presence: ${presenceMs.toFixed(0)} ms = ${(presenceMs / nodeMs).toFixed(1)} x node -e ''`,
    );
    expect(rssKiB).toBeGreaterThan(bareKiB);
    expect(bareKiB).toBeGreaterThan(0);
  });

  // The service started with each flag set in turn (a runtime drop-in), in rounds so drift hits every
  // set alike: start to presence, RSS after 10 s idle, and the CPU (all threads, from /proc) of 300
  // commands after 50, each waiting for its state. Under TCG only the ratios between sets mean anything.
  it.skipIf(!FLAG_SETS)(
    "compares Node flag sets for the unit (LAMP_EMU_FLAG_SETS): start, idle RSS, the first 300 commands",
    async () => {
      const sets = FLAG_SETS ?? [];
      const dropIn = "/run/systemd/system/lamp-agent.service.d/zz-flags.conf";
      const samples = new Map(
        sets.map((set) => [set, { startMs: [] as number[], rssMiB: [] as number[], cpuUs: [] as number[] }]),
      );
      const cpuMs = async (pid: number) => {
        // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (USER_HZ, 100).
        const fields = (await board.sh(`cut -d')' -f2- /proc/${pid}/stat`)).trim().split(" ");
        return (Number(fields[11]) + Number(fields[12])) * 10;
      };
      let n = 0;
      try {
        for (let round = 0; round < FLAG_ROUNDS; round++) {
          for (const set of round % 2 === 0 ? sets : [...sets].reverse()) {
            const offline = recorder.next(PRESENCE, (text) => text === "0", 60_000);
            await board.sh(`systemctl stop ${UNIT}`, { timeoutMs: 90_000 });
            await offline;
            await board.sh(
              `mkdir -p ${path.posix.dirname(dropIn)} && printf '[Service]\\nExecStart=\\nExecStart=node ${set} /opt/lamp-agent/dist/main.js\\n' > ${dropIn} && systemctl daemon-reload`,
            );
            const online = recorder.next(PRESENCE, (text) => text === "1", 180_000);
            const started = performance.now();
            await board.sh(`systemctl start --no-block ${UNIT}`);
            await online;
            const sample = samples.get(set);
            sample?.startMs.push(performance.now() - started);
            await new Promise((resolve) => setTimeout(resolve, 10_000));
            const pid = await mainPid();
            sample?.rssMiB.push(
              Number((await board.sh(`grep VmRSS /proc/${pid}/status`)).split(/\s+/)[1]) / 1024,
            );
            for (let i = 0; i < 50; i++)
              await command({ ...full(WHITE), brightness: ((n++ % 98) + 1) / 100 });
            const before = await cpuMs(pid);
            for (let i = 0; i < 300; i++)
              await command({ ...full(WHITE), brightness: ((n++ % 98) + 1) / 100 });
            sample?.cpuUs.push(((await cpuMs(pid)) - before) * (1000 / 300));
          }
        }
      } finally {
        await board.sh(`rm -f ${dropIn} && systemctl daemon-reload && systemctl restart ${UNIT}`, {
          timeoutMs: 90_000,
        });
      }
      const median = (values: number[]) =>
        [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
      for (const [set, sample] of samples) {
        figures.push(
          `flags "${set}": start to presence ${sample.startMs.map((v) => v.toFixed(0)).join("/")} ms, idle RSS ${sample.rssMiB.map((v) => v.toFixed(1)).join("/")} MiB, first 300 commands ${sample.cpuUs.map((v) => v.toFixed(0)).join("/")} µs CPU each (median ${median(sample.cpuUs).toFixed(0)})`,
        );
        expect(sample.rssMiB.length).toBe(FLAG_ROUNDS);
      }
    },
    1_800_000,
  );
});

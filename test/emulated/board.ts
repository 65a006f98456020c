import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "../helpers/broker.js";
import {
  alive,
  type ExecOptions,
  type ExecResult,
  runBuildScript,
  runCollected,
  sleep,
  succeeded,
} from "../helpers/process.js";

/**
 * An emulated arm64 board: QEMU's `virt` machine (TCG) booting Debian's arm64 kernel with a cached Debian
 * root as its initramfs (test/emulated/build-board.sh). Per-pin PWM chips are the kernel's own `pwm-gpio`
 * driver bound to the PL061's lines by device-tree nodes named as a Pi's `dtoverlay=pwm-gpio` names them.
 *
 * The network is QEMU's user network with `restrict=on`: the guest reaches nothing but what is forwarded,
 * which is its sshd (from a loopback port on the host) and 10.0.2.100:1883 (to the test's broker on the
 * host's loopback).
 */

export type { ExecOptions, ExecResult };

/** The broker as the guest sees it. */
export const GUEST_BROKER = "mqtt://10.0.2.100:1883";

/** A pwm-gpio instance: the Pi pin its node is named after, and the PL061 line it really drives. */
export interface PerPinPwm {
  readonly pin: number;
  readonly line: number;
}

export interface BoardOptions {
  /** build-board.sh's output directory. */
  readonly image: string;
  /** Where this run keeps its device tree and console log. */
  readonly runDir: string;
  readonly brokerPort: number;
  /** What /proc/device-tree/model says. */
  readonly model: string;
  readonly pwm: readonly PerPinPwm[];
  /** Default arm64; armhf boots build-board.sh's 32-bit board (LAMP_EMU_ARCH=armhf). */
  readonly arch?: BoardArch;
}

export type BoardArch = "arm64" | "armhf";

// Two vCPUs, as the host has two cores to share.
const MACHINES: Record<BoardArch, { readonly qemu: string; readonly args: readonly string[] }> = {
  // cortex-a72: the Pi 4's core.
  arm64: {
    qemu: "qemu-system-aarch64",
    args: ["-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048"],
  },
  // 32-bit, as Raspberry Pi OS's armhf image runs: Debian's armmp-lpae kernel on a Cortex-A15.
  armhf: { qemu: "qemu-system-arm", args: ["-M", "virt", "-cpu", "cortex-a15", "-smp", "2", "-m", "2048"] },
};

/** Why a board of `arch` cannot be built and booted here, or undefined when it can. */
export function emulationUnavailable(arch: BoardArch): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (debootstrap, chroot, binfmt_misc)";
  if (process.arch !== "x64" && process.arch !== "arm64") return `no QEMU build for ${process.arch} here`;
  // build-board.sh installs QEMU with apt; without either there is nothing to boot the board with.
  const { qemu } = MACHINES[arch];
  const onPath = (command: string) =>
    (process.env.PATH ?? "").split(":").some((dir) => dir !== "" && existsSync(path.join(dir, command)));
  if (!onPath(qemu) && !onPath("apt-get")) {
    return `no ${qemu}, and no apt-get to install it (Debian: apt install qemu-system-arm)`;
  }
  return undefined;
}

/** Runs build-board.sh or build-onoff.sh (beside this file) and resolves with the directory it prints. */
export function buildImage(script: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<string> {
  return runBuildScript(path.join(import.meta.dirname, script), args, env);
}

/**
 * The virt board's own device tree (as QEMU generates it for these options) with a Pi's model and one
 * `pwm_gpio@<pin hex>` node per entry, as raspberrypi/linux's pwm-gpio-overlay.dts adds them.
 *
 * The PL061 has 8 lines, so a node cannot say `gpios = <&gpio 19 0>` as on a Pi. Each names its line
 * with the older single-`gpio` form, which gpiolib reads for pwm-gpio just the same: the agent finds no
 * `gpios` property and reads the pin from the node's name, as it does where `gpios` is unreadable. (Its
 * reading of `gpios` is what the fake trees in test/drivers cover.)
 */
export function boardDeviceTree(
  runDir: string,
  model: string,
  pwm: readonly PerPinPwm[],
  arch: BoardArch = "arm64",
): string {
  const base = path.join(runDir, "virt.dtb");
  const machine = MACHINES[arch];
  execFileSync(machine.qemu, [...machine.args, "-machine", `dumpdtb=${base}`, "-nographic", "-nic", "none"], {
    stdio: "ignore",
  });
  const source = execFileSync("dtc", ["-q", "-I", "dtb", "-O", "dts", base], { encoding: "utf8" });
  const pl061 = /pl061@9030000 \{[^}]*?phandle = <(0x[0-9a-f]+)>;/s.exec(source)?.[1];
  if (!pl061) throw new Error("no PL061 with a phandle in QEMU's virt device tree");
  const nodes = pwm.map(
    ({ pin, line }) =>
      `\tpwm_gpio@${pin.toString(16)} {\n\t\tcompatible = "pwm-gpio";\n\t\tgpio = <${pl061} ${line} 0>;\n\t\t#pwm-cells = <3>;\n\t};`,
  );
  const patched = `${source}\n/ {\n\tmodel = "${model}";\n${nodes.join("\n")}\n};\n`;
  const dts = path.join(runDir, "board.dts");
  const dtb = path.join(runDir, "board.dtb");
  writeFileSync(dts, patched);
  execFileSync("dtc", ["-q", "-I", "dts", "-O", "dtb", "-o", dtb, dts]);
  return dtb;
}

export class Board {
  private constructor(
    private readonly qemu: ChildProcess,
    private readonly sshPort: number,
    private readonly key: string,
    readonly consoleLog: string,
  ) {}

  /**
   * Takes the cache for this process: a QEMU a killed run left behind is stopped; a run still going is
   * refused rather than disturbed.
   */
  static claim(cacheDir: string): void {
    const file = path.join(cacheDir, "running.json");
    if (existsSync(file)) {
      const left = JSON.parse(readFileSync(file, "utf8")) as { ownerPid: number; qemuPid?: number };
      if (left.ownerPid !== process.pid && alive(left.ownerPid)) {
        throw new Error(`another emulated run (pid ${left.ownerPid}) is using ${cacheDir}`);
      }
      if (left.qemuPid !== undefined && alive(left.qemuPid)) {
        const cmdline = readFileSync(`/proc/${left.qemuPid}/cmdline`, "utf8");
        if (cmdline.includes("qemu-system-")) process.kill(left.qemuPid, "SIGKILL");
      }
    }
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(file, JSON.stringify({ ownerPid: process.pid }));
  }

  static release(cacheDir: string): void {
    rmSync(path.join(cacheDir, "running.json"), { force: true });
  }

  static async boot(cacheDir: string, options: BoardOptions): Promise<Board> {
    mkdirSync(options.runDir, { recursive: true });
    const arch = options.arch ?? "arm64";
    const dtb = boardDeviceTree(options.runDir, options.model, options.pwm, arch);
    const sshPort = await freePort();
    const consoleLog = path.join(options.runDir, "console.log");
    const net = [
      "user,id=n0,restrict=on",
      `hostfwd=tcp:127.0.0.1:${sshPort}-:22`,
      // One relay per connection from the guest, so the agent can reconnect as often as it needs.
      `guestfwd=tcp:10.0.2.100:1883-cmd:socat - TCP:127.0.0.1:${options.brokerPort}`,
    ].join(",");
    const qemu = spawn(
      MACHINES[arch].qemu,
      [
        ...MACHINES[arch].args,
        "-kernel",
        path.join(options.image, "vmlinuz"),
        "-initrd",
        path.join(options.image, "initrd.cpio"),
        "-dtb",
        dtb,
        "-append",
        "console=ttyAMA0 rdinit=/init net.ifnames=0 systemd.show_status=0 quiet",
        "-netdev",
        net,
        // virtio over MMIO: no PCI option ROM to load.
        "-device",
        "virtio-net-device,netdev=n0",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        `file:${consoleLog}`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    qemu.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    writeFileSync(
      path.join(cacheDir, "running.json"),
      JSON.stringify({ ownerPid: process.pid, qemuPid: qemu.pid }),
    );
    const board = new Board(qemu, sshPort, path.join(options.image, "id_ed25519"), consoleLog);
    const deadline = Date.now() + 5 * 60_000;
    for (;;) {
      if (qemu.exitCode !== null) throw new Error(`QEMU exited ${qemu.exitCode}: ${stderr}`);
      const probe = await board
        .exec("systemctl is-system-running --wait", { timeoutMs: 120_000 })
        .catch(() => undefined);
      if (probe && probe.code !== 255) break;
      if (Date.now() > deadline) {
        await board.destroy();
        throw new Error(`the board did not come up within 5 minutes; see ${consoleLog}`);
      }
      await sleep(1000);
    }
    return board;
  }

  /** Runs a shell command on the board as root over ssh. */
  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return runCollected(
      "ssh",
      [
        "-i",
        this.key,
        "-p",
        String(this.sshPort),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "root@127.0.0.1",
        command,
      ],
      // A step that hangs shows as a failed command (code null), as ssh's own failures do.
      { ...options, onTimeout: "kill" },
    );
  }

  /** exec() that must succeed; its stdout. */
  async sh(command: string, options: ExecOptions = {}): Promise<string> {
    return succeeded(command, await this.exec(command, options));
  }

  async destroy(): Promise<void> {
    if (this.qemu.exitCode !== null || this.qemu.signalCode !== null) return;
    const exited = new Promise((resolve) => this.qemu.once("exit", resolve));
    this.qemu.kill("SIGTERM");
    await Promise.race([exited, sleep(5000)]);
    if (this.qemu.exitCode === null && this.qemu.signalCode === null) this.qemu.kill("SIGKILL");
  }
}

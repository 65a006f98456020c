import { execFileSync } from "node:child_process";
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
import { freePort, startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder } from "../helpers/mqtt-client.js";
import { type ExecResult, runBuildScript, runCollected } from "../helpers/process.js";
import { Container } from "./container.js";

/**
 * The deployment, end to end: a Debian with its own systemd, the repository copied in as a clone,
 * scripts/install.sh run by "the operator", the agent (mock driver) talking to a Mosquitto on the
 * host. Run with `npm run test:system` as root; see docs/deployment.md.
 */

const repo = fileURLToPath(new URL("../..", import.meta.url));
const cacheDir = process.env.LAMP_TEST_CACHE ?? "/var/cache/lamp-agent-test";
const LAMP_ID = "systest";
const PRESENCE = `state/${LAMP_ID}`;
const COMMAND = `lamp/${LAMP_ID}/set_config`;
const CHANGED = `lamp/${LAMP_ID}/changed`;
const DISCOVERY = `homeassistant/light/${LAMP_ID}/config`;
const UNIT = "lamp-agent.service";
const CLONE = "/root/lamp-agent";
const AGENT_PASSWORD = "agent-secret-in-a-credential";
const OBSERVER_PASSWORD = "observer-secret";

let container: Container;
let broker: TestBroker;
let recorder: Recorder | undefined;
let envFile: string;
let auth: string | undefined;
const timings: string[] = [];
/** What installing costs (docs/deployment.md), printed at the end of the run. */
const measures: string[] = [];
const FRESH_NPM_CACHE = "/root/npm-fresh";

async function timed<T>(label: string, step: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await step();
  } finally {
    timings.push(`${label}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

function buildRoot(): Promise<string> {
  return runBuildScript(path.join(repo, "test/system/build-root.sh"), [], { LAMP_TEST_CACHE: cacheDir });
}

/** The files of a clone of this working tree (tracked and new, not ignored), uncommitted edits included. */
function copyCloneInto(root: string, clone = CLONE): void {
  const target = path.join(root, clone);
  mkdirSync(target, { recursive: true });
  const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: repo,
  });
  // Files deleted but not yet committed are still listed; a clone would not have them either.
  const files = listed
    .toString()
    .split("\0")
    .filter((file) => file !== "" && existsSync(path.join(repo, file)));
  // tar keeps the modes: install.sh stays executable, as in a clone.
  const tarball = execFileSync("tar", ["-C", repo, "--null", "-T", "-", "-cf", "-"], {
    input: files.join("\0"),
    maxBuffer: 512 * 1024 * 1024,
  });
  execFileSync("tar", ["-C", target, "-xf", "-"], { input: tarball });
}

/**
 * npm in the container must reach the registry the way the host does: behind a TLS-inspecting
 * proxy (CI, corporate networks) that takes the host's extra certificate authorities.
 */
async function trustHostCertificates(): Promise<void> {
  const local = "/usr/local/share/ca-certificates";
  const extra = existsSync(local) ? readdirSync(local, { recursive: true }).map(String) : [];
  if (!extra.some((file) => file.endsWith(".crt"))) return;
  cpSync(local, path.join(container.root, local), { recursive: true });
  await container.sh("update-ca-certificates", { timeoutMs: 60_000 });
  // npm checks against its own list unless told to use the system's.
  await container.sh("echo cafile=/etc/ssl/certs/ca-certificates.crt >> /etc/npmrc");
}

async function mainPid(): Promise<number> {
  return Number((await container.sh(`systemctl show -p MainPID --value ${UNIT}`)).trim());
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      const status = await container.exec(
        `systemctl --no-pager status ${UNIT}; journalctl -u ${UNIT} -n 30 --no-pager`,
      );
      throw new Error(`${what}: not within ${timeoutMs} ms\n${status.stdout}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const isActive = async () => (await container.exec(`systemctl is-active ${UNIT}`)).stdout.trim() === "active";

function presence(): Recorder {
  if (!recorder) throw new Error("no MQTT observer: the broker step did not run");
  return recorder;
}

/** The operator's configuration and broker password, as they would write them before install.sh. */
async function writeConfiguration(): Promise<void> {
  await container.sh("mkdir -p /etc/lamp-agent && cat > /etc/lamp-agent/lamp-agent.env", { input: envFile });
  await container.sh("cat > /etc/lamp-agent/mqtt-password", { input: `${AGENT_PASSWORD}\n` });
}

describe("lamp-agent deployed on a real systemd", () => {
  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error("the system test needs root (debootstrap, nspawn, mounts)");
    // Before the root is built: two runs must not build or boot from one cache at once.
    Container.claim(cacheDir);
    const image = await timed("root image (build or cache)", buildRoot);
    // Debian's npm in the container fetches from the npm registry; a cache kept on the host between
    // runs makes a warm run mostly offline.
    const npmCache = path.join(cacheDir, "npm");
    mkdirSync(npmCache, { recursive: true });
    container = await timed("boot", () =>
      Container.boot({ image, cacheDir, binds: [`${npmCache}:/root/.npm`] }),
    );
    // The broker wants a password, which the agent gets only as a systemd credential. It stays down
    // at first: the lamp must start without it.
    auth = mkdtempSync(path.join(tmpdir(), "lamp-systest-auth-"));
    const passwords = path.join(auth, "passwords");
    execFileSync("mosquitto_passwd", ["-b", "-c", passwords, "lamp", AGENT_PASSWORD]);
    execFileSync("mosquitto_passwd", ["-b", passwords, "observer", OBSERVER_PASSWORD]);
    broker = await startBroker({
      listener: ["listener {port} 127.0.0.1", "allow_anonymous false", `password_file ${passwords}`],
    });
    if (broker.kind !== "mosquitto") throw new Error("the system test needs mosquitto on the host");
    await broker.stop();
    copyCloneInto(container.root);
    await trustHostCertificates();
    envFile = [
      "# written by the system test before install.sh, which must keep it",
      `LAMP_ID=${LAMP_ID}`,
      `MQTT_URL=mqtt://127.0.0.1:${broker.port}`,
      "MQTT_USERNAME=lamp",
      "MQTT_KEEPALIVE=5",
      "GPIO_DRIVER=mock",
      "LOG_LEVEL=debug",
      "",
    ].join("\n");
    await writeConfiguration();
  });

  afterAll(async () => {
    await recorder?.end().catch(() => {});
    await broker?.close().catch(() => {});
    if (container) {
      const journal = await container.exec(`journalctl -u ${UNIT} -n 40 --no-pager`).catch(() => undefined);
      if (journal) process.stderr.write(`--- last journal lines of ${UNIT}\n${journal.stdout}\n`);
      await container.destroy();
    }
    if (auth) rmSync(auth, { recursive: true, force: true });
    process.stderr.write(`--- timings\n${timings.join("\n")}\n--- install costs\n${measures.join("\n")}\n`);
  });

  it("installs from a fresh clone without development dependencies and starts without a broker", async () => {
    // An empty npm cache, so what it holds afterwards is what the install downloaded.
    const result = await timed("install.sh (first, bundles)", () =>
      container.exec(
        `cd ${CLONE} && npm_config_cache=${FRESH_NPM_CACHE} /usr/bin/time -o /root/install.time -f '%M %e' scripts/install.sh`,
        { timeoutMs: 12 * 60_000 },
      ),
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain("bundling with esbuild");
    expect(result.stdout).toContain("kept /etc/lamp-agent/lamp-agent.env");
    expect(result.stdout).toContain("installed /etc/systemd/system/lamp-agent.service.d/credentials.conf");
    expect(await container.sh("cat /etc/lamp-agent/lamp-agent.env")).toBe(envFile);
    // Type=notify: active means READY=1 arrived, with the broker still down.
    expect(await isActive()).toBe(true);

    // GNU time's %M is the largest resident size of any one process of the install (npm, esbuild, ...).
    const [peakKiB, seconds] = (await container.sh("cat /root/install.time")).trim().split(/\s+/).map(Number);
    const downloadKiB = Number((await container.sh(`du -sk ${FRESH_NPM_CACHE}`)).split(/\s/)[0]);
    measures.push(
      `install from a fresh clone: ${seconds} s, peak ${((peakKiB ?? 0) / 1024).toFixed(0)} MiB, npm cache ${(downloadKiB / 1024).toFixed(1)} MiB`,
    );
    expect((peakKiB ?? Number.POSITIVE_INFINITY) / 1024).toBeLessThanOrEqual(150);
    // Nothing of the development dependencies was fetched (npm keys its cache by the tarballs' addresses).
    const fetched = await container.sh(
      `grep -rhoa '[^/"]*/-/[^/"]*[.]tgz' ${FRESH_NPM_CACHE}/_cacache/index-v5 | sort -u`,
    );
    expect(fetched).toContain("mqtt/-/mqtt-");
    expect(fetched).not.toMatch(/typescript|vitest|biome/);
    await container.sh(`test ! -e ${CLONE}/node_modules && test ! -e /opt/lamp-agent/node_modules`);
  });

  it("puts lamp-agent and lampctl on the PATH", async () => {
    const version = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")).version as string;
    expect(await container.sh("lamp-agent --version")).toBe(`${version}\n`);
    expect(await container.sh("lampctl --help")).toContain("lampctl");
  });

  it("runs unprivileged and sandboxed", async () => {
    const pid = await mainPid();
    const uid = (await container.sh("id -u lamp-agent")).trim();
    const status = await container.sh(`cat /proc/${pid}/status`);
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"));
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    expect(await container.sh("id -nG lamp-agent")).toMatch(/\bgpio\b/);
    // The password reaches the agent as a credential file, never through its environment.
    expect(await container.sh(`tr '\\0' '\\n' < /proc/${pid}/environ`)).not.toContain(AGENT_PASSWORD);
    // ProtectSystem=strict: the agent's view of /opt and /etc is read-only.
    const write = await container.exec(`nsenter -t ${pid} -m -- touch /opt/lamp-agent/x /etc/x`);
    expect(write.code).not.toBe(0);
    expect(write.stderr).toContain("Read-only file system");
  });

  it("publishes presence 1 once the broker comes up", async () => {
    await broker.restart();
    recorder = await Recorder.connect(broker.url, [PRESENCE, CHANGED, DISCOVERY], {
      username: "observer",
      password: OBSERVER_PASSWORD,
    });
    const online = await presence().wait(PRESENCE, (text) => text === "1", 90_000);
    expect(online.text).toBe("1");
  });

  it("lamp-agent run by hand beside the running service refuses, and the service runs on", async () => {
    const pid = (await container.sh(`systemctl show -p MainPID --value ${UNIT}`)).trim();
    // The link systemd keeps for the active unit, which the agent (and --test) look for.
    expect(await container.sh("readlink /run/systemd/units/invocation:lamp-agent.service")).toMatch(
      /^[0-9a-f]{32}\n$/,
    );
    const byHand = await container.exec("cd /tmp && lamp-agent", { timeoutMs: 60_000 });
    expect(byHand.code, `${byHand.stdout}\n${byHand.stderr}`).toBe(1);
    expect(byHand.stderr).toContain("lamp-agent.service is running and drives this lamp");
    expect(byHand.stderr).toContain("sudo systemctl stop lamp-agent");
    expect(await isActive()).toBe(true);
    expect((await container.sh(`systemctl show -p MainPID --value ${UNIT}`)).trim()).toBe(pid);
  });

  it("takes a command; systemctl stop publishes 0, exits 0 and keeps the state in StateDirectory", async () => {
    const changed = presence().next(CHANGED, (text) => text.includes('"brightness":0.42'), 20_000);
    await presence().publish(COMMAND, JSON.stringify({ on: true, brightness: 0.42, client: "systest" }));
    await changed;

    const offline = presence().next(PRESENCE, (text) => text === "0", 20_000);
    await container.sh(`systemctl stop ${UNIT}`, { timeoutMs: 30_000 });
    await offline;
    const show = await container.sh(`systemctl show -p Result -p ExecMainStatus ${UNIT}`);
    expect(show).toContain("Result=success");
    expect(show).toContain("ExecMainStatus=0");
    // Written under ProtectSystem=strict, into the directory systemd made for the lamp-agent user.
    expect(await container.sh("stat -c %U /var/lib/lamp-agent/state.json")).toBe("lamp-agent\n");
    expect(await container.sh("cat /var/lib/lamp-agent/state.json")).toContain("0.42");
  });

  it("kill -9: the broker sends the Will's 0 and systemd brings the agent back to 1", async () => {
    const online = presence().next(PRESENCE, (text) => text === "1", 30_000);
    const restored = presence().next(CHANGED, (text) => text.includes('"brightness":0.42'), 30_000);
    await container.sh(`systemctl start ${UNIT}`, { timeoutMs: 40_000 });
    await online;
    await restored;
    // V8's compiled code lands in CacheDirectory= once a run has lasted 5 s (this one, if none before).
    await waitFor(
      "the code cache in /var/cache/lamp-agent",
      async () => (await container.exec("ls /var/cache/lamp-agent")).stdout.includes(".v8cache"),
      20_000,
    );
    expect(await container.sh("stat -c %U /var/cache/lamp-agent/agent-*.v8cache")).toBe("lamp-agent\n");
    const startLines = async () =>
      (await container.sh(`journalctl -u ${UNIT} --no-pager -o cat | grep 'lamp-agent starting' || true`))
        .split("\n")
        .filter(Boolean);
    const startsBefore = (await startLines()).length;
    const before = await mainPid();
    const restarts = Number((await container.sh(`systemctl show -p NRestarts --value ${UNIT}`)).trim());
    const will = presence().next(PRESENCE, (text) => text === "0", 20_000);
    const back = presence().next(PRESENCE, (text) => text === "1", 40_000);
    await container.sh(`kill -9 ${before}`);
    await will;
    await back;
    expect(await mainPid()).not.toBe(before);
    // The restarted agent compiled nothing it had compiled before: it started from the cache.
    await waitFor("the restart's start line", async () => (await startLines()).length > startsBefore, 10_000);
    expect((await startLines()).at(-1)).toContain("codeCache=used");
    expect(Number((await container.sh(`systemctl show -p NRestarts --value ${UNIT}`)).trim())).toBe(
      restarts + 1,
    );
  });

  it("a frozen agent (SIGSTOP) is killed by the watchdog and restarted", async () => {
    // A short watchdog so the test does not wait 20 s; the agent pings at half of it.
    await container.sh(
      `mkdir -p /etc/systemd/system/${UNIT}.d && printf '[Service]\\nWatchdogSec=3s\\n' > /etc/systemd/system/${UNIT}.d/zz-systest.conf && systemctl daemon-reload`,
    );
    const online = presence().next(PRESENCE, (text) => text === "1", 30_000);
    await container.sh(`systemctl restart ${UNIT}`, { timeoutMs: 40_000 });
    await online;
    const healthy = await mainPid();
    // Alive past two watchdog periods: the pings do arrive and are accepted.
    await new Promise((resolve) => setTimeout(resolve, 7000));
    expect(await mainPid()).toBe(healthy);
    expect(await isActive()).toBe(true);

    const offline = presence().next(PRESENCE, (text) => text === "0", 30_000);
    const back = presence().next(PRESENCE, (text) => text === "1", 60_000);
    await container.sh(`kill -STOP ${healthy}`);
    await offline;
    await back;
    expect(await mainPid()).not.toBe(healthy);
    const journal = await container.sh(`journalctl -u ${UNIT} --no-pager -o cat`);
    expect(journal).toMatch(/[Ww]atchdog timeout/);
    await container.sh(`rm /etc/systemd/system/${UNIT}.d/zz-systest.conf && systemctl daemon-reload`);
  });

  it("re-running install.sh with nothing new changes nothing", async () => {
    await container.sh(`systemctl restart ${UNIT}`, { timeoutMs: 40_000 });
    const pid = await mainPid();
    const result = await timed("install.sh (again, nothing new)", () =>
      container.exec(`cd ${CLONE} && scripts/install.sh`, { timeoutMs: 5 * 60_000 }),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("/opt/lamp-agent is up to date");
    expect(await mainPid()).toBe(pid);
  });

  it("an update that does not build leaves the running agent alone", async () => {
    const pid = await mainPid();
    // No type check on the device (that is `npm run lint` on a developer's machine): a syntax error.
    await container.sh(
      `cd ${CLONE} && cp src/main.ts /root/main.ts.good && echo 'const broken = ;' >> src/main.ts`,
    );
    const result = await timed("install.sh (update, broken build)", () =>
      container.exec(`cd ${CLONE} && scripts/install.sh`, { timeoutMs: 12 * 60_000 }),
    );
    const output = `${result.stdout}\n${result.stderr}`;
    expect(result.code, output).not.toBe(0);
    expect(output).toContain("bundling (scripts/build.mjs) failed");
    expect(await isActive()).toBe(true);
    expect(await mainPid()).toBe(pid);
    await container.sh("test ! -e /opt/lamp-agent.old && ! ls -d /opt/lamp-agent.new.* 2>/dev/null");
  });

  it("an update that builds replaces the agent and restarts it", async () => {
    const pid = await mainPid();
    await container.sh(
      `cd ${CLONE} && cp /root/main.ts.good src/main.ts && echo '// an update' >> src/main.ts`,
    );
    const back = presence().next(PRESENCE, (text) => text === "1", 60_000);
    const result = await timed("install.sh (update, builds)", () =>
      container.exec(`cd ${CLONE} && scripts/install.sh`, { timeoutMs: 12 * 60_000 }),
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain("restarting lamp-agent.service");
    await back;
    expect(await mainPid()).not.toBe(pid);
    expect(await container.sh("cat /opt/lamp-agent/.build-id")).toMatch(/^[0-9a-f]{64}\n$/);
  });

  it("--uninstall stops it, removes it from Home Assistant, leaves nothing running, keeps config and state", async () => {
    await presence().wait(DISCOVERY, (text) => text.includes('"unique_id"'), 10_000);
    const offline = presence().next(PRESENCE, (text) => text === "0", 30_000);
    const forgotten = presence().next(DISCOVERY, (text) => text === "", 30_000);
    const result = await container.exec(`cd ${CLONE} && scripts/install.sh --uninstall`, {
      timeoutMs: 60_000,
    });
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain("removed the lamp from the broker and Home Assistant");
    expect(result.stdout).toContain(`removed ${DISCOVERY} (the Home Assistant light)`);
    await offline;
    await forgotten;
    await waitFor(
      "no process of lamp-agent left",
      async () => (await container.exec("pgrep -u lamp-agent")).code === 1,
      10_000,
    );
    expect((await container.exec(`systemctl is-active ${UNIT}`)).stdout.trim()).not.toBe("active");
    await container.sh(`test ! -e /etc/systemd/system/${UNIT} && test ! -e /etc/systemd/system/${UNIT}.d`);
    await container.sh(
      "test ! -e /opt/lamp-agent && test ! -e /var/cache/lamp-agent && test ! -e /usr/local/bin/lamp-agent && test ! -e /usr/local/bin/lampctl",
    );
    await container.sh("test -s /etc/lamp-agent/lamp-agent.env && test -s /var/lib/lamp-agent/state.json");
    expect((await container.exec("ls /etc/systemd/system/multi-user.target.wants/")).stdout).not.toContain(
      UNIT,
    );
  });

  it("--purge removes configuration, state and the user", async () => {
    const result = await container.exec(`cd ${CLONE} && scripts/install.sh --purge`, { timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(0);
    await container.sh("test ! -e /etc/lamp-agent && test ! -e /var/lib/lamp-agent");
    expect((await container.exec("getent passwd lamp-agent")).code).not.toBe(0);
    expect((await container.exec("getent group gpio")).code).toBe(0);
  });
  describe("installed from a laptop with --host", () => {
    let laptop: string;
    let target: string;

    /** install.sh on "the laptop" (this host, a fresh clone without node_modules or dist). */
    function installFromLaptop(args: string[]): Promise<ExecResult> {
      return runCollected(
        "bash",
        [path.join(laptop, "clone/scripts/install.sh"), "--host", target, ...args],
        {
          cwd: path.join(laptop, "clone"),
          env: { ...process.env, PATH: `${path.join(laptop, "bin")}:${process.env.PATH}` },
          timeoutMs: 10 * 60_000,
          // As an operator's Ctrl-C would: install.sh cleans up on the remote side.
          onTimeout: "kill",
          killSignal: "SIGTERM",
        },
      );
    }

    beforeAll(async () => {
      laptop = mkdtempSync(path.join(tmpdir(), "lamp-systest-laptop-"));
      copyCloneInto(laptop, "clone");
      rmSync(path.join(laptop, "clone/dist"), { recursive: true, force: true });
      // sshd in the container, on a port of its own (the container shares the host's network), with
      // a key made for this run; the laptop's ssh is told to use it.
      const key = path.join(laptop, "id_ed25519");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "lamp-systest", "-f", key]);
      const port = await freePort();
      await container.sh("install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys", {
        input: readFileSync(`${key}.pub`, "utf8"),
      });
      await container.sh("cat > /etc/ssh/sshd_config.d/systest.conf && systemctl start ssh", {
        input: `Port ${port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n`,
      });
      mkdirSync(path.join(laptop, "bin"));
      writeFileSync(
        path.join(laptop, "bin/ssh"),
        `#!/bin/sh\nexec /usr/bin/ssh -F none -i ${key} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$@"\n`,
        { mode: 0o755 },
      );
      target = `ssh://root@127.0.0.1:${port}`;
      // The Pi needs only Node.js: without npm there, nothing can be fetched or built on it.
      await container.sh("mv /usr/bin/npm /usr/bin/npm.hidden");
      await writeConfiguration();
    });

    afterAll(async () => {
      await container?.exec("mv /usr/bin/npm.hidden /usr/bin/npm");
      if (laptop) rmSync(laptop, { recursive: true, force: true });
    });

    it("bundles on the laptop, copies over SSH and installs and starts it on the Pi", async () => {
      const online = presence().next(PRESENCE, (text) => text === "1", 90_000);
      const result = await timed("install.sh --host (bundles on the laptop)", () => installFromLaptop([]));
      const output = `${result.stdout}\n${result.stderr}`;
      expect(result.code, output).toBe(0);
      expect(output).toContain("bundling with esbuild");
      expect(output).toContain(`copying to ${target}`);
      // install.sh's own messages, from the Pi.
      expect(output).toContain("kept /etc/lamp-agent/lamp-agent.env");
      expect(output).toContain("linked /usr/local/bin/lampctl -> /opt/lamp-agent/dist/cli/lampctl.js");
      expect(output).toContain("starting lamp-agent.service");
      await online;
      expect(await isActive()).toBe(true);
      await container.sh(
        "test ! -e /opt/lamp-agent/node_modules && ! ls -d /tmp/lamp-agent-install.* 2>/dev/null",
      );
      // The laptop's clone is as it was.
      expect(existsSync(path.join(laptop, "clone/node_modules"))).toBe(false);
    });

    it("a second --host run with nothing new changes nothing", async () => {
      const pid = await mainPid();
      const result = await timed("install.sh --host (again, nothing new)", () => installFromLaptop([]));
      expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
      expect(result.stdout).toContain("/opt/lamp-agent is up to date");
      expect(await mainPid()).toBe(pid);
    });

    it("updates several hosts in turn, each checked online with the new version, and stops at a broken one", async () => {
      // A change on the laptop, so the first host really restarts on a new build. The same Pi under a
      // second name is the second host: it finds itself up to date, and is checked all the same.
      // (A new version, as a release is: a comment alone bundles to the same bytes, and is no update.)
      const manifest = path.join(laptop, "clone/package.json");
      const pkg = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
      writeFileSync(manifest, JSON.stringify({ ...pkg, version: `${pkg.version}-fleet` }, null, 2));
      const second = target.replace("127.0.0.1", "localhost");
      const broken = `ssh://root@127.0.0.1:${await freePort()}`;
      const version = (
        JSON.parse(readFileSync(path.join(laptop, "clone/package.json"), "utf8")) as {
          version: string;
        }
      ).version;
      const pid = await mainPid();
      const result = await timed("install.sh --host, two hosts and a broken one", () =>
        installFromLaptop(["--host", `${second},${broken}`]),
      );
      const output = `${result.stdout}\n${result.stderr}`;
      expect(result.code, output).toBe(1);
      expect(output).toContain(`--- ${target} (1 of 3)`);
      expect(output).toContain(`--- ${second} (2 of 3)`);
      // Each checked on the broker, through lampctl as the service: its info and its presence.
      expect(
        result.stdout.match(
          new RegExp(`lamp ${LAMP_ID} is online with version ${version.replaceAll(".", "\\.")} \\(was `, "g"),
        ),
      ).toHaveLength(2);
      expect(result.stdout).toMatch(new RegExp(`^${target.replaceAll(".", "\\.")}\\s+${LAMP_ID}\\s`, "m"));
      expect(result.stderr).toContain(`stopped at ${broken} (3 of 3): cannot reach ${broken} with ssh`);
      expect(await mainPid()).not.toBe(pid);
      expect(await isActive()).toBe(true);
    });

    it("--host --uninstall removes it from the Pi", async () => {
      const offline = presence().next(PRESENCE, (text) => text === "0", 30_000);
      const result = await installFromLaptop(["--uninstall"]);
      expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
      await offline;
      await container.sh("test ! -e /opt/lamp-agent && test ! -e /usr/local/bin/lamp-agent");
      expect(result.stdout).not.toContain("bundling");
    });
  });
});

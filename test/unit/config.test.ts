import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { ConfigError, type LoadedConfig, loadConfig, VARIABLE_NAMES } from "../../src/config.js";
import { teardown } from "../helpers/teardown.js";

const track = teardown("each");
let cwd: string;
beforeEach(() => {
  cwd = track(mkdtempSync(path.join(tmpdir(), "lamp-config-")));
});

const load = (env: Record<string, string>, dotenv = false): LoadedConfig =>
  loadConfig({ env: { LAMP_ID: "abc123", ...env }, cwd, dotenv });

/** The ConfigError that loading `env` throws. */
function problemsOf(env: Record<string, string>): ConfigError {
  try {
    load(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig: defaults", () => {
  it("fills in every documented default from LAMP_ID", () => {
    const { config } = load({});
    expect(config).toMatchObject({
      lampId: "abc123",
      mqtt: { url: "mqtt://localhost:1883", clientId: "lamp-abc123", keepalive: 10 },
      topics: {
        command: "lamp/abc123/set_config",
        state: "lamp/abc123/changed",
        error: "lamp/abc123/error",
        presence: "state/abc123",
      },
      driver: "auto",
      pins: [19, 26, 13],
      activeLow: false,
      frequency: 1000,
      powerOn: "restore",
      ha: { enabled: true, prefix: "homeassistant" },
      sysfsRoot: "/sys",
      log: { level: "info" },
    });
    expect(config.gamma).toBeGreaterThan(1);
    expect(config.mqtt.password).toBeUndefined();
    expect(config.mqtt.username).toBeUndefined();
    expect(config.stateFile).toBe(path.join(cwd, ".lamp-agent", "state.json"));
  });

  it("derives a valid LAMP_ID when none is set", () => {
    const { config } = loadConfig({ env: {}, cwd, dotenv: false });
    expect(config.lampId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(config.mqtt.clientId).toBe(`lamp-${config.lampId}`);
  });

  it("puts the state file in the first of systemd's STATE_DIRECTORY entries", () => {
    const { config } = load({ STATE_DIRECTORY: "/var/lib/lamp-agent:/var/lib/other" });
    expect(config.stateFile).toBe("/var/lib/lamp-agent/state.json");
  });

  it("resolves a relative STATE_FILE against the working directory", () => {
    expect(load({ STATE_FILE: "data/s.json" }).config.stateFile).toBe(path.join(cwd, "data", "s.json"));
  });

  it("derives topics from TOPIC_BASE", () => {
    const { topics } = load({ TOPIC_BASE: "home/desk" }).config;
    expect(topics).toEqual({
      command: "home/desk/set_config",
      state: "home/desk/changed",
      error: "home/desk/error",
      presence: "state/abc123",
      info: "home/desk/info",
      telemetry: "home/desk/telemetry",
    });
  });

  it("returns a frozen config", () => {
    const { config } = load({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.mqtt)).toBe(true);
    expect(Object.isFrozen(config.pins)).toBe(true);
  });

  it("treats an empty variable as unset", () => {
    expect(load({ LED_PINS: "", GAMMA: "" }).config.pins).toEqual([19, 26, 13]);
  });

  it("speaks MQTT 5 unless MQTT_PROTOCOL says 3.1.1", () => {
    expect(load({}).config.mqtt.protocol).toBe(5);
    expect(load({ MQTT_PROTOCOL: "3.1.1" }).config.mqtt.protocol).toBe(4);
    expect(problemsOf({ MQTT_PROTOCOL: "4" }).problems).toEqual(['MQTT_PROTOCOL="4": allowed: 5, 3.1.1']);
  });

  it("parses booleans, numbers and names", () => {
    const { config } = load({
      LED_ACTIVE_LOW: "yes",
      HA_DISCOVERY: "0",
      PWM_FREQUENCY: "800",
      GAMMA: "1",
      GPIO_DRIVER: "mock",
      POWER_ON: "off",
      MQTT_KEEPALIVE: "30",
    });
    expect(config).toMatchObject({
      activeLow: true,
      ha: { enabled: false },
      frequency: 800,
      gamma: 1,
      driver: "mock",
      powerOn: "off",
      mqtt: { keepalive: 30 },
    });
  });
});

describe("loadConfig: every problem at once", () => {
  it("lists each problem on its own line naming the variable, the value and what is allowed", () => {
    const error = problemsOf({
      LAMP_ID: "bad/id",
      MQTT_URL: "http://broker",
      LED_PINS: "1,2",
      GAMMA: "0.5",
      POWER_ON: "maybe",
      MQTT_KEEPALIVE: "ten",
      LED_ACTIVE_LOW: "perhaps",
      GPIO_DRIVER: "wiringpi",
    });
    expect(error.name).toBe("ConfigError");
    const names = error.problems.map((p) => p.split("=")[0]);
    expect(names.sort()).toEqual(
      [
        "GAMMA",
        "GPIO_DRIVER",
        "LAMP_ID",
        "LED_ACTIVE_LOW",
        "LED_PINS",
        "MQTT_KEEPALIVE",
        "MQTT_URL",
        "POWER_ON",
      ].sort(),
    );
    expect(error.problems).toContain('LAMP_ID="bad/id": allowed: 1 to 64 of A-Z a-z 0-9 _ -');
    expect(error.problems).toContain('POWER_ON="maybe": allowed: restore, on, off');
    expect(error.problems).toContain('GAMMA="0.5": allowed: a number from 1 to 4');
    for (const problem of error.problems) {
      expect(error.message).toContain(problem);
      expect(problem).toMatch(/allowed: /);
    }
    expect(error.message.split("\n")).toHaveLength(error.problems.length + 1);
  });

  it.each([
    ["LAMP_ID", "a+b"],
    ["LAMP_ID", "x".repeat(65)],
    ["MQTT_URL", "not a url"],
    ["MQTT_URL", "tcp://host:1883"],
    ["MQTT_CLIENT_ID", "has space"],
    ["MQTT_KEEPALIVE", "0"],
    ["MQTT_KEEPALIVE", "1.5"],
    ["MQTT_RECONNECT_MIN_MS", "5"],
    ["MQTT_RECONNECT_MAX_MS", "1.5"],
    ["PWM_FREQUENCY", "0"],
    ["GAMMA", "5"],
    ["LOG_LEVEL", "verbose"],
    ["HA_DISCOVERY", "enabled"],
    ["TOPIC_BASE", "lamp/#"],
    ["PRESENCE_TOPIC", "state/+"],
    ["COMMAND_TOPIC", "lamp/+/set"],
  ])("rejects %s=%s", (name, value) => {
    const error = problemsOf({ [name]: value });
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatch(new RegExp(`^${name}=`));
    expect(error.problems[0]).toContain(JSON.stringify(value));
  });

  it.each(["mqtt://h:1883", "mqtts://h:8883", "ws://h/mqtt", "wss://h/mqtt"])(
    "accepts MQTT_URL %s",
    (url) => {
      expect(load({ MQTT_URL: url }).config.mqtt.url).toBe(url);
    },
  );

  it("takes the reconnect backoff from MQTT_RECONNECT_MIN_MS and _MAX_MS, minimum first", () => {
    expect(load({}).config.mqtt.reconnect).toEqual({ initialMs: 1000, maxMs: 20_000 });
    expect(load({ MQTT_RECONNECT_MIN_MS: "50", MQTT_RECONNECT_MAX_MS: "400" }).config.mqtt.reconnect).toEqual(
      { initialMs: 50, maxMs: 400 },
    );
    expect(problemsOf({ MQTT_RECONNECT_MIN_MS: "5000", MQTT_RECONNECT_MAX_MS: "1000" }).problems).toEqual([
      "MQTT_RECONNECT_MIN_MS=5000 and MQTT_RECONNECT_MAX_MS=1000: the minimum must not exceed the maximum",
    ]);
  });

  it("refuses MQTT_PASSWORD together with MQTT_PASSWORD_FILE", () => {
    const file = path.join(cwd, "pw");
    writeFileSync(file, "x\n");
    const error = problemsOf({ MQTT_PASSWORD: "p", MQTT_PASSWORD_FILE: file });
    expect(error.problems).toEqual(["MQTT_PASSWORD and MQTT_PASSWORD_FILE: set one of them, not both"]);
  });

  it("refuses unreadable TLS files, by name", () => {
    const error = problemsOf({ MQTT_CA_FILE: path.join(cwd, "missing.pem") });
    expect(error.problems).toEqual([
      `MQTT_CA_FILE=${JSON.stringify(path.join(cwd, "missing.pem"))}: allowed: a path to a readable file`,
    ]);
  });

  it("reports a certificate without its key together with a problem read after it", () => {
    const cert = path.join(cwd, "cert.pem");
    writeFileSync(cert, "-");
    expect(problemsOf({ MQTT_CERT_FILE: cert, GAMMA: "9" }).problems).toHaveLength(2);
  });

  it("refuses a client certificate without its key", () => {
    const cert = path.join(cwd, "cert.pem");
    writeFileSync(cert, "-");
    expect(problemsOf({ MQTT_CERT_FILE: cert }).problems).toEqual([
      "MQTT_CERT_FILE and MQTT_KEY_FILE: a client certificate needs both",
    ]);
  });

  // BUG (src/config.ts): the certificate/key pairing check only runs when `problems.length === 0` at that
  // point, so a certificate without its key is not reported alongside a problem in any variable read
  // before it (LAMP_ID, MQTT_URL, MQTT_USERNAME/PASSWORD/_FILE, MQTT_CA_FILE): the user fixes MQTT_URL,
  // runs again, and only then hears about the key. The contract asks for every problem at once. (The guard is
  // there to avoid a spurious pairing error when one of the two files was set but unreadable; checking
  // whether the variables were *set* would keep that without hiding the problem.)
  it("reports a certificate without its key together with other problems", () => {
    const cert = path.join(cwd, "cert.pem");
    writeFileSync(cert, "-");
    const error = problemsOf({ MQTT_CERT_FILE: cert, MQTT_URL: "http://broker" });
    expect(error.problems).toHaveLength(2);
    expect(error.problems).toContain("MQTT_CERT_FILE and MQTT_KEY_FILE: a client certificate needs both");
  });
});

describe("loadConfig: a misspelt value", () => {
  it.each([
    ["GPIO_DRIVER", "pigpo", "allowed: pigpio, sysfs-pwm, onoff, mock, auto; did you mean pigpio?"],
    ["POWER_ON", "restor", "allowed: restore, on, off; did you mean restore?"],
    ["LOG_LEVEL", "debg", "did you mean debug?"],
    ["LOG_FORMAT", "JSON", "did you mean json?"],
    ["MQTT_PROTOCOL", "3.11", "allowed: 5, 3.1.1; did you mean 3.1.1?"],
  ])("%s=%s names the value it probably is", (name, value, hint) => {
    const error = problemsOf({ [name]: value });
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toContain(`${name}="${value}": allowed: `);
    expect(error.problems[0]).toMatch(new RegExp(`${hint.replace(/[.?]/g, "\\$&")}$`));
  });

  it("guesses nothing for a value far from every allowed one", () => {
    expect(problemsOf({ GPIO_DRIVER: "wiringpi" }).problems).toEqual([
      'GPIO_DRIVER="wiringpi": allowed: pigpio, sysfs-pwm, onoff, mock, auto',
    ]);
  });
});

describe("loadConfig: topics", () => {
  it("allows COMMAND_TOPIC equal to STATE_TOPIC (the guard must hold)", () => {
    const { topics } = load({ COMMAND_TOPIC: "lamp/abc123/io", STATE_TOPIC: "lamp/abc123/io" }).config;
    expect(topics.command).toBe("lamp/abc123/io");
    expect(topics.state).toBe("lamp/abc123/io");
  });

  it("rejects a command or state topic equal to the presence topic", () => {
    expect(problemsOf({ COMMAND_TOPIC: "state/abc123" }).problems).toEqual([
      'COMMAND_TOPIC="state/abc123": must differ from the presence and error topics',
    ]);
    expect(problemsOf({ STATE_TOPIC: "here", PRESENCE_TOPIC: "here" }).problems).toEqual([
      'STATE_TOPIC="here": must differ from the presence and error topics',
    ]);
  });

  it("rejects a command or state topic equal to the error topic", () => {
    expect(problemsOf({ STATE_TOPIC: "lamp/abc123/error" }).problems).toEqual([
      'STATE_TOPIC="lamp/abc123/error": must differ from the presence and error topics',
    ]);
  });

  it("reports both when command and state both equal presence", () => {
    const error = problemsOf({ COMMAND_TOPIC: "p", STATE_TOPIC: "p", PRESENCE_TOPIC: "p" });
    expect(error.problems.map((p) => p.split("=")[0])).toEqual(["COMMAND_TOPIC", "STATE_TOPIC"]);
  });
});

describe("loadConfig: LED_PINS", () => {
  it.each([
    ["19", [19]],
    ["0", [0]],
    ["27", [27]],
    [" 5 , 6,7 ", [5, 6, 7]],
    ["19,26,13", [19, 26, 13]],
  ])("accepts %j", (value, pins) => {
    expect(load({ LED_PINS: value }).config.pins).toEqual(pins);
  });

  it.each([
    ["1,2", "allowed: one pin (mono) or three (red,green,blue)"],
    ["1,2,3,4", "allowed: one pin (mono) or three (red,green,blue)"],
    ["28", "allowed: BCM pin numbers 0 to 27"],
    ["-1", "allowed: BCM pin numbers 0 to 27"],
    ["GPIO19", "allowed: BCM pin numbers 0 to 27"],
    ["19,,13", "allowed: BCM pin numbers 0 to 27"],
    ["1.5", "allowed: BCM pin numbers 0 to 27"],
    ["5,5,6", "allowed: each pin once"],
  ])("rejects %j", (value, message) => {
    expect(problemsOf({ LED_PINS: value }).problems).toEqual([
      `LED_PINS=${JSON.stringify(value)}: ${message}`,
    ]);
  });
});

describe("loadConfig: secrets", () => {
  it("masks the password in the effective configuration, keeping it in the config", () => {
    const { config, effective } = load({ MQTT_USERNAME: "lamp", MQTT_PASSWORD: "hunter2" });
    expect(config.mqtt.password).toBe("hunter2");
    expect(effective.find((e) => e.name === "MQTT_PASSWORD")).toEqual({
      name: "MQTT_PASSWORD",
      value: "********",
      source: "environment",
    });
    expect(effective.find((e) => e.name === "MQTT_USERNAME")?.value).toBe("lamp");
    expect(JSON.stringify(effective)).not.toContain("hunter2");
  });

  it("never puts the password in the error text", () => {
    const file = path.join(cwd, "pw");
    writeFileSync(file, "other\n");
    const error = problemsOf({ MQTT_PASSWORD: "hunter2", MQTT_PASSWORD_FILE: file, GAMMA: "0" });
    expect(error.problems.length).toBeGreaterThanOrEqual(2);
    expect(error.message).not.toContain("hunter2");
    expect(JSON.stringify(error.problems)).not.toContain("hunter2");
  });

  // BUG/ODDITY (src/config.ts): only MQTT_PASSWORD is treated as secret. A password given in the URL
  // (mqtt://user:pass@host, which MQTT.js accepts) is printed as is by `--check` through `effective`,
  // and echoed in the error text when the URL is rejected. The contract says credentials are never
  // logged and `--check` masks secrets.
  it("masks a password embedded in MQTT_URL", () => {
    const { effective } = load({ MQTT_URL: "mqtts://lamp:hunter2@broker:8883" });
    expect(JSON.stringify(effective)).not.toContain("hunter2");
  });

  it("reads MQTT_PASSWORD_FILE relative to CREDENTIALS_DIRECTORY, without the trailing newline", () => {
    const credentials = path.join(cwd, "creds");
    rmSync(credentials, { recursive: true, force: true });
    mkdirp(credentials);
    writeFileSync(path.join(credentials, "mqtt-password"), "s3cret\n");
    const { config, effective } = load({
      CREDENTIALS_DIRECTORY: credentials,
      MQTT_PASSWORD_FILE: "mqtt-password",
    });
    expect(config.mqtt.password).toBe("s3cret");
    expect(JSON.stringify(effective)).not.toContain("s3cret");
  });

  it("reads an absolute MQTT_PASSWORD_FILE as is, and reports a missing one", () => {
    const file = path.join(cwd, "pw");
    writeFileSync(file, "abs\r\n");
    expect(
      load({ CREDENTIALS_DIRECTORY: "/nonexistent", MQTT_PASSWORD_FILE: file }).config.mqtt.password,
    ).toBe("abs");
    const error = problemsOf({ CREDENTIALS_DIRECTORY: cwd, MQTT_PASSWORD_FILE: "nope" });
    expect(error.problems).toEqual(['MQTT_PASSWORD_FILE="nope": allowed: a path to a readable file']);
  });
});

describe("loadConfig: .env", () => {
  it("fills in what the environment does not set, from the working directory", () => {
    writeFileSync(path.join(cwd, ".env"), "GAMMA=1.8\nLED_PINS=12\nPOWER_ON=on\n");
    const { config, effective } = load({ POWER_ON: "off" }, true);
    expect(config.gamma).toBe(1.8);
    expect(config.pins).toEqual([12]);
    expect(config.powerOn).toBe("off");
    expect(effective.find((e) => e.name === "GAMMA")?.source).toBe(".env");
    expect(effective.find((e) => e.name === "POWER_ON")?.source).toBe("environment");
    expect(effective.find((e) => e.name === "PWM_FREQUENCY")?.source).toBe("default");
  });

  it("reports problems found in .env by variable name", () => {
    writeFileSync(path.join(cwd, ".env"), "LED_PINS=99\n");
    try {
      loadConfig({ env: { LAMP_ID: "abc123" }, cwd });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual(['LED_PINS="99": allowed: BCM pin numbers 0 to 27']);
    }
  });

  it("is ignored with dotenv: false", () => {
    writeFileSync(path.join(cwd, ".env"), "GAMMA=1.8\n");
    expect(load({}, false).config.gamma).not.toBe(1.8);
  });
});

describe("the variables", () => {
  it(".env.example documents every variable, and nothing else", () => {
    const example = readFileSync(path.join(import.meta.dirname, "../../.env.example"), "utf8");
    const documented = [...example.matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual([...VARIABLE_NAMES].sort());
    expect(new Set(documented).size).toBe(documented.length);
  });

  it("lists every variable in --check, defaults typed and shown as text", () => {
    const { effective } = load({});
    const listed = effective.map((e) => e.name);
    // Without a value and without a default, the optional ones are not listed.
    const optional = VARIABLE_NAMES.filter((name) => !listed.includes(name));
    expect(optional.sort()).toEqual(
      [
        "MOCK_GPIO_TRACE",
        "MQTT_CA_FILE",
        "MQTT_CERT_FILE",
        "MQTT_KEY_FILE",
        "MQTT_PASSWORD",
        "MQTT_PASSWORD_FILE",
        "MQTT_USERNAME",
      ].sort(),
    );
    const shown = Object.fromEntries(effective.map((e) => [e.name, e.value]));
    expect(shown).toMatchObject({
      LED_PINS: "19,26,13",
      LED_ACTIVE_LOW: "false",
      GAMMA: "2.2",
      MQTT_RECONNECT_MAX_MS: "20000",
      MQTT_PROTOCOL: "5",
      COMMAND_TOPIC: "lamp/abc123/set_config",
    });
  });
});

describe("loadConfig: unknown variables that look like ours", () => {
  it("refuses a look-alike in .env, naming the variable it probably is", () => {
    writeFileSync(path.join(cwd, ".env"), "LED_PIN=12\nGAMMA=1\n");
    expect(() => load({}, true)).toThrow(
      "invalid configuration:\n  unknown variable LED_PIN (.env); did you mean LED_PINS?",
    );
  });

  it("lists every look-alike in .env as a problem, and warns of an unknown name with no guess", () => {
    writeFileSync(path.join(cwd, ".env"), "mqtt_url=mqtt://x\nGAMA=1\nCOLOUR=red\n");
    expect(() => load({}, true)).toThrow(
      expect.objectContaining({
        problems: [
          "unknown variable mqtt_url (.env); did you mean MQTT_URL?",
          "unknown variable GAMA (.env); did you mean GAMMA?",
        ],
      }),
    );
    writeFileSync(path.join(cwd, ".env"), "GAMMA=1\nCOLOUR=red\n");
    const { config, warnings } = load({}, true);
    expect(warnings).toEqual(["unknown variable COLOUR (.env); see .env.example for the variables"]);
    expect(config.gamma).toBe(1);
  });

  it("only warns of the same look-alike in the environment, and goes on with the default", () => {
    const { config, warnings } = load({ LED_PIN: "12" });
    expect(warnings).toEqual(["unknown variable LED_PIN (environment); did you mean LED_PINS?"]);
    expect(config.pins).toEqual([19, 26, 13]);
  });

  it("warns about the environment's near misses and our prefixes only", () => {
    const { warnings } = load({
      MQTT_PASWORD: "x",
      LED_BRIGHTNESS: "1",
      PATH: "/usr/bin",
      HOME: "/root",
      STATE_DIRECTORY: "/var/lib/lamp-agent",
      INVOCATION_ID: "abc",
      _: "/usr/bin/node",
      D: "1",
      // Other programs' variables a few letters from ours: OpenSSL's, not a misspelt MQTT_CERT_FILE.
      SSL_CERT_FILE: "/etc/ssl/certs/ca-certificates.crt",
      SSL_CERT_DIR: "/etc/ssl/certs",
      LAMPID: "kitchen",
      // Two edits that bring in two letters LAMP_ID lacks, and a swap: still within a typo's reach.
      LQMP_IX: "kitchen",
      LAPM_ID: "kitchen",
    });
    expect(warnings).toEqual([
      "unknown variable MQTT_PASWORD (environment); did you mean MQTT_PASSWORD?",
      "unknown variable LED_BRIGHTNESS (environment); see .env.example for the variables",
      "unknown variable LAMPID (environment); did you mean LAMP_ID?",
      "unknown variable LQMP_IX (environment); did you mean LAMP_ID?",
      "unknown variable LAPM_ID (environment); did you mean LAMP_ID?",
    ]);
  });
});

describe("loadConfig: the installed configuration", () => {
  /** An /etc/lamp-agent as install.sh leaves it. */
  function installed(env: string, password?: string): string {
    const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-etc-")));
    writeFileSync(path.join(dir, "lamp-agent.env"), env, { mode: 0o600 });
    if (password !== undefined) writeFileSync(path.join(dir, "mqtt-password"), password, { mode: 0o600 });
    return dir;
  }
  const loadFrom = (installedDir: string, env: Record<string, string> = {}) =>
    loadConfig({ env, cwd, installedDir });

  it("is read, with its password file, when there is no .env here", () => {
    const dir = installed("LAMP_ID=desk\nMQTT_USERNAME=lamp\n", "s3cret\n");
    const { config, effective, file, warnings } = loadFrom(dir, { GAMMA: "1" });
    expect(file).toBe(path.join(dir, "lamp-agent.env"));
    expect(config.lampId).toBe("desk");
    expect(config.mqtt.username).toBe("lamp");
    expect(config.mqtt.password).toBe("s3cret");
    expect(config.gamma).toBe(1);
    const source = (name: string) => effective.find((e) => e.name === name)?.source;
    expect(source("LAMP_ID")).toBe(path.join(dir, "lamp-agent.env"));
    expect(source("MQTT_PASSWORD_FILE")).toBe("installed password file");
    expect(source("GAMMA")).toBe("environment");
    expect(warnings).toEqual([]);
    expect(JSON.stringify(effective)).not.toContain("s3cret");
  });

  it("leaves the password file alone when a password is configured", () => {
    const dir = installed("MQTT_PASSWORD=fromfile\n", "s3cret\n");
    expect(loadFrom(dir).config.mqtt.password).toBe("fromfile");
    expect(loadFrom(dir, { MQTT_PASSWORD: "fromenv" }).config.mqtt.password).toBe("fromenv");
  });

  it("gives way to a .env in the working directory", () => {
    const dir = installed("LAMP_ID=desk\n");
    writeFileSync(path.join(cwd, ".env"), "LAMP_ID=local\n");
    const { config, file } = loadFrom(dir);
    expect(config.lampId).toBe("local");
    expect(file).toBe(".env");
  });

  it("is not read again under systemd, which has applied it already", () => {
    const dir = installed("LAMP_ID=desk\n", "s3cret\n");
    const { config, file } = loadFrom(dir, { INVOCATION_ID: "0123", LAMP_ID: "svc" });
    expect(config.lampId).toBe("svc");
    expect(config.mqtt.password).toBeUndefined();
    expect(file).toBeUndefined();
  });

  it("refuses a look-alike in it", () => {
    const dir = installed("LED_PIN=12\n");
    expect(() => loadFrom(dir, { LAMP_ID: "abc" })).toThrow(
      `unknown variable LED_PIN (${path.join(dir, "lamp-agent.env")}); did you mean LED_PINS?`,
    );
  });

  it("reports problems in it by variable name", () => {
    const dir = installed("LED_PINS=99\n");
    expect(() => loadFrom(dir, { LAMP_ID: "abc" })).toThrow(
      'LED_PINS="99": allowed: BCM pin numbers 0 to 27',
    );
  });

  it("is skipped without a file, and ignored with dotenv: false", () => {
    expect(loadFrom(path.join(cwd, "nothing-installed")).file).toBeUndefined();
    const dir = installed("LAMP_ID=desk\n");
    expect(loadConfig({ env: {}, cwd, installedDir: dir, dotenv: false }).config.lampId).not.toBe("desk");
  });

  // As root (the CI here) every file is readable: this needs an ordinary user.
  it.skipIf(process.getuid?.() === 0)("says how to read it when it is root's", () => {
    const dir = installed("LAMP_ID=desk\n");
    chmodSync(path.join(dir, "lamp-agent.env"), 0o000);
    const { config, warnings } = loadFrom(dir, { LAMP_ID: "abc" });
    expect(config.lampId).toBe("abc");
    expect(warnings).toEqual([
      `cannot read the installed configuration ${path.join(dir, "lamp-agent.env")}: run as root (sudo) to use it, or put a .env here`,
    ]);
  });
});

function mkdirp(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

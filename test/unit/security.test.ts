import { chmodSync, copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactUrl } from "../../src/config.js";
import { explainConnectionError } from "../../src/mqtt/errors.js";
import { makePki, type Pki } from "../helpers/pki.js";

let pki: Pki;
beforeAll(() => {
  pki = makePki();
});

const load = (env: Record<string, string>) =>
  loadConfig({ dotenv: false, env: { LAMP_ID: "unit", GPIO_DRIVER: "mock", ...env } });

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    load(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("TLS files are checked with the configuration", () => {
  it("accepts a matching certificate and key", () => {
    const id = pki.client("unit");
    expect(problemsOf({ MQTT_CA_FILE: pki.ca, MQTT_CERT_FILE: id.cert, MQTT_KEY_FILE: id.key })).toEqual([]);
  });

  it("refuses a key that does not belong to the certificate (tls.connect would throw on every attempt)", () => {
    const a = pki.client("unit-a");
    const b = pki.client("unit-b");
    expect(problemsOf({ MQTT_CERT_FILE: a.cert, MQTT_KEY_FILE: b.key })).toEqual([
      `MQTT_KEY_FILE=${JSON.stringify(b.key)}: does not belong to the certificate in MQTT_CERT_FILE`,
    ]);
  });

  it("refuses files that are not PEM", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-unit-"));
    const junk = path.join(dir, "junk.pem");
    writeFileSync(junk, "not a certificate\n");
    const problems = problemsOf({ MQTT_CA_FILE: junk });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^MQTT_CA_FILE=".*junk\.pem": not a PEM certificate/);
  });
});

describe("secret files readable by others give a warning", () => {
  it("warns for a key with mode 0640 or 0644, not for 0600", () => {
    const id = pki.client("unit-perm");
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-unit-"));
    const key = path.join(dir, "k.key");
    copyFileSync(id.key, key);
    for (const [mode, who] of [
      [0o640, "its group"],
      [0o644, "everyone"],
    ] as const) {
      chmodSync(key, mode);
      const { warnings } = load({ MQTT_CERT_FILE: id.cert, MQTT_KEY_FILE: key });
      expect(warnings).toEqual([
        `MQTT_KEY_FILE=${key} is open to ${who} (mode 0${mode.toString(8)}): make it private to the agent's user with chmod 600`,
      ]);
    }
    chmodSync(key, 0o600);
    expect(load({ MQTT_CERT_FILE: id.cert, MQTT_KEY_FILE: key }).warnings).toEqual([]);
  });
});

describe("redaction", () => {
  it("hides a password in a broker URL, and nothing else", () => {
    expect(redactUrl("mqtts://lamp:s3cret@broker.lan:8883")).toBe("mqtts://lamp:********@broker.lan:8883");
    expect(redactUrl("mqtt://broker.lan:1883")).toBe("mqtt://broker.lan:1883");
    expect(redactUrl("mqtt://lamp@broker.lan")).toBe("mqtt://lamp@broker.lan");
  });

  it("--check's effective list masks MQTT_PASSWORD and the URL's password", () => {
    const { effective } = load({ MQTT_URL: "mqtt://u:hunter2@h:1883", MQTT_PASSWORD: "hunter3" });
    const shown = JSON.stringify(effective);
    expect(shown).not.toContain("hunter2");
    expect(shown).not.toContain("hunter3");
    expect(effective.find((s) => s.name === "MQTT_URL")?.value).toBe("mqtt://u:********@h:1883");
  });
});

describe("connection errors are explained", () => {
  const context = {
    url: "mqtt://broker.lan:1883",
    protocol: 5 as const,
    clientCertificate: false,
    credentials: true,
  };
  it.each([
    [
      { code: 134, message: "Connection refused: Bad User Name or Password" },
      /refused the login: bad user name or password \(reason code 134\)/,
    ],
    [
      { code: 4, message: "Connection refused: Bad username or password" },
      /bad user name or password \(return code 4\)/,
    ],
    [{ code: "CERT_NOT_YET_VALID", message: "certificate is not yet valid" }, /clock/],
    [{ code: "EHOSTUNREACH", message: "connect EHOSTUNREACH" }, /cannot reach broker\.lan:1883/],
    [
      { code: "ECONNRESET", message: "read ECONNRESET" },
      /if this is a TLS port \(usually 8883\), use mqtts:\/\//,
    ],
  ])("%o", (error, expected) => {
    const protocol = error.code === 4 ? 4 : 5;
    expect(explainConnectionError(error, { ...context, protocol })).toMatch(expected);
  });
});

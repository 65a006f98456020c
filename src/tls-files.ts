import type { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";

// Loaded on first use: a lamp on mqtt:// never needs them, and loading them starts OpenSSL, which
// costs an idle agent about 2.5 MiB and its start about 20 of Node's built-in modules.
const load = createRequire(import.meta.url);
const crypto = (): typeof import("node:crypto") => load("node:crypto");
const tls = (): typeof import("node:tls") => load("node:tls");

export interface TlsFiles {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Reads the CA, certificate and key, and checks that Node can build a TLS context from them. Called
 * before every connection attempt, so a certificate renewed on disk is used at the next reconnect; a
 * half-written renewal (new certificate, old key) throws here instead of inside MQTT.js, where
 * tls.connect throws synchronously and would take the process down.
 */
export function loadTlsMaterial(files: TlsFiles): TlsMaterial {
  const material: TlsMaterial = {};
  if (files.caFile) material.ca = readFileSync(files.caFile);
  if (files.certFile) material.cert = readFileSync(files.certFile);
  if (files.keyFile) material.key = readFileSync(files.keyFile);
  if (material.ca || material.cert) tls().createSecureContext(material);
  return material;
}

/** What is wrong with the configured TLS files, one line each, for the configuration check. */
export function tlsFileProblems(files: TlsFiles): string[] {
  const problems: string[] = [];
  if (files.caFile) {
    try {
      new (crypto().X509Certificate)(readFileSync(files.caFile));
    } catch (error) {
      problems.push(
        `MQTT_CA_FILE=${JSON.stringify(files.caFile)}: not a PEM certificate (${(error as Error).message})`,
      );
    }
  }
  // A certificate without its key (or the reverse) is reported as that by the configuration; its
  // contents only matter once the pair is complete.
  if (!files.certFile || !files.keyFile) return problems;
  let certificate: X509Certificate | undefined;
  if (files.certFile) {
    try {
      certificate = new (crypto().X509Certificate)(readFileSync(files.certFile));
    } catch (error) {
      problems.push(
        `MQTT_CERT_FILE=${JSON.stringify(files.certFile)}: not a PEM certificate (${(error as Error).message})`,
      );
    }
  }
  if (files.keyFile) {
    try {
      const key = crypto().createPrivateKey(readFileSync(files.keyFile));
      if (certificate && !certificate.checkPrivateKey(key)) {
        problems.push(
          `MQTT_KEY_FILE=${JSON.stringify(files.keyFile)}: does not belong to the certificate in MQTT_CERT_FILE`,
        );
      }
    } catch (error) {
      const message = (error as Error).message;
      problems.push(
        `MQTT_KEY_FILE=${JSON.stringify(files.keyFile)}: ${
          /passphrase/i.test(message)
            ? "an encrypted key; the agent needs it unencrypted (and readable only by its user)"
            : `not a PEM private key (${message})`
        }`,
      );
    }
  }
  return problems;
}

/**
 * Warnings for secret files that others can read: a private key or password readable by the group or
 * everyone is as good as published on a shared machine. Warnings, not errors: the agent still runs.
 */
export function secretFileWarnings(
  files: readonly { readonly name: string; readonly path?: string | undefined }[],
) {
  const warnings: string[] = [];
  for (const { name, path } of files) {
    if (!path) continue;
    let mode: number;
    try {
      mode = statSync(path).mode & 0o777;
    } catch {
      continue;
    }
    if ((mode & 0o077) !== 0) {
      const who = mode & 0o007 ? "everyone" : "its group";
      warnings.push(
        `${name}=${path} is open to ${who} (mode ${mode.toString(8).padStart(4, "0")}): make it private to the agent's user with chmod 600`,
      );
    }
  }
  return warnings;
}

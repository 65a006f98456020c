import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Identity } from "./pki.js";

/** A TLS listener block for startBroker: `{port}` on 127.0.0.1 with this server identity. */
export function tlsListener(ca: string, server: Identity, extra: readonly string[] = []): string[] {
  return [
    "listener {port} 127.0.0.1",
    `cafile ${ca}`,
    `certfile ${server.cert}`,
    `keyfile ${server.key}`,
    ...extra,
  ];
}

/** A Mosquitto password file made with mosquitto_passwd, the way a user makes one. */
export function passwordFile(users: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-passwd-"));
  const file = path.join(dir, "passwd");
  let first = true;
  for (const [user, password] of Object.entries(users)) {
    execFileSync("mosquitto_passwd", [...(first ? ["-c"] : []), "-b", file, user, password], {
      stdio: "ignore",
    });
    first = false;
  }
  return file;
}

/** Changes (or adds) one user's password in an existing password file. */
export function setPassword(file: string, user: string, password: string): void {
  execFileSync("mosquitto_passwd", ["-b", file, user, password], { stdio: "ignore" });
}

/** An ACL file: `user <name>` then its `topic <access> <topic>` lines. */
export function aclFile(rules: Record<string, readonly string[]>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-acl-"));
  const file = path.join(dir, "acl");
  const lines = Object.entries(rules).flatMap(([user, topics]) => [`user ${user}`, ...topics, ""]);
  writeFileSync(file, lines.join("\n"));
  return file;
}

/** What a lamp needs and no more: its own command, state, error and presence topics, and HA discovery. */
export function lampAcl(id: string, prefix = "homeassistant"): string[] {
  return [
    `topic read lamp/${id}/set_config`,
    `topic write lamp/${id}/changed`,
    `topic write lamp/${id}/error`,
    `topic write state/${id}`,
    `topic write ${prefix}/light/${id}/config`,
    `topic read ${prefix}/status`,
  ];
}

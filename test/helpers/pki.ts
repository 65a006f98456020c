import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** Key and certificate file paths of one identity. */
export interface Identity {
  readonly cert: string;
  readonly key: string;
}

/** A throw-away PKI made with the openssl CLI, like a user would make one for their broker. */
export interface Pki {
  readonly dir: string;
  readonly ca: string;
  /** A second, unrelated CA: trusting it instead of `ca` is the "wrong CA" mistake. */
  readonly otherCa: string;
  /** Server certificate for 127.0.0.1 and localhost, signed by `ca`. */
  readonly server: Identity;
  /** Server certificate signed by `ca` but expired yesterday. */
  readonly expiredServer: Identity;
  /** Server certificate signed by `ca` for another host name: the name check must refuse it. */
  readonly mismatchedServer: Identity;
  /** Issues a client certificate with this common name (the broker's user name with use_identity_as_username). */
  client(commonName: string, options?: { expired?: boolean; signer?: "ca" | "otherCa" }): Identity;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** EC keys: fast to make, and what a Pi should use anyway. */
function newKey(dir: string, name: string): string {
  const file = path.join(dir, `${name}.key`);
  openssl(dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);
  // Keys are private: 0600, as the agent's permission check expects.
  chmodSync(file, 0o600);
  return file;
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const key = newKey(dir, name);
  const cert = path.join(dir, `${name}.crt`);
  openssl(dir, [
    "req",
    "-x509",
    "-new",
    "-key",
    key,
    "-sha256",
    "-days",
    "2",
    "-subj",
    `/CN=lamp-agent test ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    cert,
  ]);
  return { cert, key };
}

let serial = 1;

function issue(
  dir: string,
  signer: { cert: string; key: string },
  name: string,
  commonName: string,
  extensions: string[],
  days: number,
): Identity {
  const key = newKey(dir, name);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(ext, `${extensions.join("\n")}\n`);
  openssl(dir, ["req", "-new", "-key", key, "-subj", `/CN=${commonName}`, "-out", csr]);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    signer.cert,
    "-CAkey",
    signer.key,
    "-set_serial",
    String(serial++),
    "-sha256",
    // -1 day gives a certificate whose validity ended before it began: expired from the start.
    "-days",
    String(days),
    "-extfile",
    ext,
    "-out",
    cert,
  ]);
  return { cert, key };
}

const SERVER_EXT = ["basicConstraints=CA:FALSE", "extendedKeyUsage=serverAuth"];
const CLIENT_EXT = ["basicConstraints=CA:FALSE", "extendedKeyUsage=clientAuth"];

export function makePki(): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), "lamp-pki-"));
  const ca = makeCa(dir, "ca");
  const other = makeCa(dir, "other-ca");
  const localNames = "subjectAltName=IP:127.0.0.1,DNS:localhost";
  return {
    dir,
    ca: ca.cert,
    otherCa: other.cert,
    server: issue(dir, ca, "server", "localhost", [...SERVER_EXT, localNames], 2),
    expiredServer: issue(dir, ca, "expired-server", "localhost", [...SERVER_EXT, localNames], -1),
    mismatchedServer: issue(
      dir,
      ca,
      "mismatched-server",
      "broker.example.net",
      [...SERVER_EXT, "subjectAltName=DNS:broker.example.net"],
      2,
    ),
    client(commonName, options = {}) {
      const signer = options.signer === "otherCa" ? other : ca;
      const name = `client-${commonName}-${options.expired ? "expired" : "ok"}-${options.signer ?? "ca"}`;
      return issue(dir, signer, name, commonName, CLIENT_EXT, options.expired ? -1 : 2);
    },
  };
}

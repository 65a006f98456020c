/**
 * Turns what Node, OpenSSL and MQTT.js throw at a connecting client into one sentence a user can act
 * on. The original code stays in the text (in parentheses) so it can still be searched for.
 */

/** MQTT 5 reason codes a lamp can meet (MQTT 5.0, section 2.4), by number. */
const REASON_CODES: Readonly<Record<number, string>> = {
  128: "unspecified error",
  129: "malformed packet",
  130: "protocol error",
  131: "implementation specific error",
  132: "unsupported protocol version",
  133: "client identifier not valid",
  134: "bad user name or password",
  135: "not authorized",
  136: "server unavailable",
  137: "server busy",
  138: "banned",
  140: "bad authentication method",
  143: "topic filter invalid",
  144: "topic name invalid",
  145: "packet identifier in use",
  149: "packet too large",
  151: "quota exceeded",
  153: "payload format invalid",
  154: "retain not supported",
  155: "QoS not supported",
  156: "use another server",
  157: "server moved",
  158: "shared subscriptions not supported",
  159: "connection rate exceeded",
  161: "subscription identifiers not supported",
  162: "wildcard subscriptions not supported",
};

/** MQTT 3.1.1 CONNACK return codes (section 3.2.2.3). */
const V3_CONNACK: Readonly<Record<number, string>> = {
  1: "unacceptable protocol version",
  2: "client identifier rejected",
  3: "server unavailable",
  4: "bad user name or password",
  5: "not authorized",
};

/** "not authorized (reason code 135)", or "reason code 200" for a number we do not know. */
export function reasonText(code: number): string {
  const name = REASON_CODES[code];
  return name ? `${name} (reason code ${code})` : `reason code ${code}`;
}

export interface ErrorContext {
  /** The broker URL, credentials already removed. */
  readonly url: string;
  readonly protocol: 4 | 5;
  readonly caFile?: string | undefined;
  readonly clientCertificate: boolean;
  readonly credentials: boolean;
}

const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
]);

function where(url: string): { host: string; port: string; tls: boolean } {
  try {
    const parsed = new URL(url);
    const tls = parsed.protocol === "mqtts:" || parsed.protocol === "wss:";
    const port =
      parsed.port || (parsed.protocol === "mqtts:" ? "8883" : parsed.protocol === "mqtt:" ? "1883" : "");
    return { host: parsed.hostname, port, tls };
  } catch {
    return { host: url, port: "", tls: false };
  }
}

/** One line naming the cause of a failed or lost connection, and what to check. */
export function explainConnectionError(error: unknown, context: ErrorContext): string {
  const e = (error ?? {}) as { message?: unknown; code?: unknown };
  const message = typeof e.message === "string" ? e.message : String(error);
  const { host, port, tls } = where(context.url);
  const address = port ? `${host}:${port}` : host;

  if (typeof e.code === "number") {
    const code = e.code;
    const name = context.protocol === 4 && code < 128 ? V3_CONNACK[code] : REASON_CODES[code];
    const shown = name
      ? `${name} (${context.protocol === 4 && code < 128 ? "return" : "reason"} code ${code})`
      : message;
    if (name === "bad user name or password" || name === "not authorized") {
      const hint = context.credentials
        ? context.clientCertificate
          ? "check MQTT_USERNAME, MQTT_PASSWORD or MQTT_PASSWORD_FILE, the client certificate and the broker's ACL"
          : "check MQTT_USERNAME and MQTT_PASSWORD or MQTT_PASSWORD_FILE"
        : context.clientCertificate
          ? "check that the broker knows this certificate's name"
          : "the broker wants credentials: set MQTT_USERNAME and MQTT_PASSWORD or MQTT_PASSWORD_FILE";
      return `the broker refused the login: ${shown}; ${hint}`;
    }
    if (name === "client identifier not valid" || name === "client identifier rejected") {
      return `the broker refused the client id: ${shown}; set MQTT_CLIENT_ID to 1 to 23 letters and digits if it is strict`;
    }
    return `the broker refused the connection: ${shown}`;
  }

  const code = typeof e.code === "string" ? e.code : "";
  if (code === "ECONNREFUSED") {
    return `nothing accepts connections at ${address} (ECONNREFUSED): is the broker running, and is this its port?`;
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return `cannot resolve the broker's host name "${host}" (${code})`;
  }
  if (["EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EHOSTDOWN"].includes(code)) {
    return `cannot reach ${address} (${code}): check the network`;
  }
  if (code === "ECONNRESET" || code === "EPIPE" || /socket disconnected before secure TLS/.test(message)) {
    return tls
      ? `the broker at ${address} closed the connection during the TLS handshake (${code || "reset"}): is this a TLS port? A plain MQTT port (usually 1883) does this to mqtts://`
      : `the broker at ${address} closed the connection before answering (${code || "reset"}): if this is a TLS port (usually 8883), use mqtts://`;
  }
  if (code === "CERT_HAS_EXPIRED") {
    return `the broker's certificate has expired (CERT_HAS_EXPIRED): renew it on the broker, and check this machine's clock`;
  }
  if (code === "CERT_NOT_YET_VALID") {
    // A Pi has no real-time clock: until NTP has synchronised, every certificate looks like this.
    return `the broker's certificate is not valid yet (CERT_NOT_YET_VALID): is this machine's clock right (NTP synchronised)?`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `the broker's certificate is not for "${host}" (ERR_TLS_CERT_ALTNAME_INVALID: ${message}): connect with a name the certificate lists, or reissue it with this name in its subjectAltName`;
  }
  if (UNTRUSTED.has(code)) {
    return context.caFile
      ? `the broker's certificate is not signed by the CA in MQTT_CA_FILE=${context.caFile} (${code}): is this the right CA file for this broker?`
      : `the broker's certificate is not signed by a CA this system trusts (${code}): set MQTT_CA_FILE to the broker's CA certificate`;
  }
  if (code === "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED") {
    return `the broker requires a client certificate (${code}): set MQTT_CERT_FILE and MQTT_KEY_FILE`;
  }
  if (code === "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED") {
    return `the broker refused our client certificate: it has expired (${code}); renew MQTT_CERT_FILE`;
  }
  if (code === "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA") {
    return `the broker refused our client certificate: it is not signed by a CA the broker trusts (${code})`;
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG") {
    return `${address} does not speak TLS (${code}): use mqtt:// for a plain port, or the broker's TLS port`;
  }
  if (code.startsWith("ERR_SSL_")) {
    // OpenSSL's own text is long and ends in a source path; its code names the alert well enough.
    return `the TLS handshake with ${address} failed (${code})`;
  }
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** A one-shot client's line when every node of a cluster's MQTT_URL failed: `why` is the last node's. */
export function noNodeLetUsIn(nodes: number, why: string): string {
  return `none of the ${nodes} nodes of MQTT_URL let us in; the last: ${why}`;
}

/** The refusal reason of an MQTT error, readable: "Not authorized (reason code 135)". */
export function describeMqttError(error: unknown): string {
  const e = error as { message?: string; code?: unknown };
  return typeof e.code === "number" ? `${e.message} (reason code ${e.code})` : String(e.message ?? error);
}

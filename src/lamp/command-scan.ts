/** What a command may hold (command.ts's Command, which this must not import: command.ts imports this). */
export interface ScannedCommand {
  on?: boolean;
  color?: { h?: number; s?: number };
  brightness?: number;
  transition?: number;
  client?: string | null;
  identify?: boolean;
}

/** The longest transition a command may ask for, in seconds. */
export const MAX_TRANSITION_S = 3600;

/** The rules of a command's numbers, shared with command.ts's check of a parsed command. */
export const isUnit = (value: unknown): value is number =>
  typeof value === "number" && value >= 0 && value <= 1;
export const isTransition = (value: unknown): value is number =>
  typeof value === "number" && value >= 0 && value <= MAX_TRANSITION_S;

/**
 * The common command read straight from its bytes: a JSON object of the LAMPI fields, ASCII, no
 * escapes, each field once, every value valid. Returns the command JSON.parse and validCommand would
 * give, or undefined for anything else, which parseCommand then decodes, parses and judges as before
 * (so every refusal is still explained there). It never accepts what JSON.parse refuses:
 * test/unit/lamp/command-scan.test.ts holds it to JSON.parse and validCommand over random commands,
 * spellings and damaged payloads.
 *
 * Why: decoding the payload and JSON.parse were half of the command path's own CPU, for a payload of
 * 60 to 80 bytes whose shape is always the same: V8 builds each parsed object through its map
 * transitions and internalizes every key, in a large stretch of native code that a lamp woken once per
 * command runs with cold caches. This scan takes 0.23 µs where they took 0.61, and a steady stream of
 * commands costs the agent 9% less CPU end to end (docs/performance.md, seventh pass).
 */
export function scanCommand(b: Uint8Array): ScannedCommand | undefined {
  let i = space(b, 0);
  if (b[i] !== OPEN) return undefined;
  i = space(b, i + 1);
  let on: boolean | undefined;
  let identify: boolean | undefined;
  let brightness = Number.NaN;
  let transition = Number.NaN;
  let client: string | null | undefined;
  let color = false;
  h = Number.NaN;
  s = Number.NaN;
  if (b[i] === CLOSE) i++;
  else {
    for (;;) {
      const key = keyAt(b, i);
      if (key === undefined) return undefined;
      i = space(b, at);
      if (b[i] !== COLON) return undefined;
      i = space(b, i + 1);
      switch (key) {
        case "on":
        case "identify": {
          let value: boolean;
          if (wordAt(b, i, "true")) value = true;
          else if (wordAt(b, i, "false")) value = false;
          else return undefined;
          i = at;
          if (key === "on") {
            if (on !== undefined) return undefined;
            on = value;
          } else {
            if (identify !== undefined) return undefined;
            identify = value;
          }
          break;
        }
        case "brightness": {
          if (!Number.isNaN(brightness)) return undefined;
          brightness = numberAt(b, i);
          if (!isUnit(brightness)) return undefined;
          i = at;
          break;
        }
        case "transition": {
          if (!Number.isNaN(transition)) return undefined;
          transition = numberAt(b, i);
          if (!isTransition(transition)) return undefined;
          i = at;
          break;
        }
        case "client":
          if (client !== undefined) return undefined;
          client = clientAt(b, i);
          if (client === undefined) return undefined;
          i = at;
          break;
        default:
          // "color"
          if (color || !colorAt(b, i)) return undefined;
          color = true;
          i = at;
      }
      i = space(b, i);
      if (b[i] === CLOSE) {
        i++;
        break;
      }
      if (b[i] !== COMMA) return undefined;
      i = space(b, i + 1);
    }
  }
  if (space(b, i) !== b.length) return undefined;
  const command: ScannedCommand = {};
  if (on !== undefined) command.on = on;
  if (color) {
    const parts: { h?: number; s?: number } = {};
    if (!Number.isNaN(h)) parts.h = h;
    if (!Number.isNaN(s)) parts.s = s;
    command.color = parts;
  }
  if (!Number.isNaN(brightness)) command.brightness = brightness;
  if (!Number.isNaN(transition)) command.transition = transition;
  if (client !== undefined) command.client = client;
  if (identify !== undefined) command.identify = identify;
  return command;
}

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

/** Exact doubles: a value of at most 15 digits scaled by one of these is correctly rounded. */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/** Where the last of the helpers below stopped reading (they return a value, and this). */
let at = 0;
/** The colour's parts read by colorAt(); NaN for a part not given. */
let h = Number.NaN;
let s = Number.NaN;

/** The sender's name of the last command, kept with its bytes: a UI sends the same one every time. */
let lastClientBytes = new Uint8Array(0);
let lastClient = "";

/** The index of the first byte from `i` on that is not JSON whitespace. */
function space(b: Uint8Array, i: number): number {
  while (i < b.length) {
    const c = b[i];
    if (c !== SPACE && c !== LF && c !== CR && c !== TAB) break;
    i++;
  }
  return i;
}

/** One of the command's own keys, spelt without escapes, at `i`; undefined for any other. */
function keyAt(b: Uint8Array, i: number): string | undefined {
  if (b[i] !== QUOTE) return undefined;
  const start = i + 1;
  let end = start;
  while (end < b.length && b[end] !== QUOTE && b[end] !== BACKSLASH) end++;
  if (end >= b.length || b[end] !== QUOTE) return undefined;
  const name = keyOfLength(end - start, b[start]);
  if (name === undefined) return undefined;
  for (let k = 0; k < name.length; k++) if (b[start + k] !== name.charCodeAt(k)) return undefined;
  at = end + 1;
  return name;
}

function wordAt(b: Uint8Array, i: number, text: string): boolean {
  if (i + text.length > b.length) return false;
  for (let k = 0; k < text.length; k++) if (b[i + k] !== text.charCodeAt(k)) return false;
  at = i + text.length;
  return true;
}

const isDigit = (c: number | undefined): c is number => c !== undefined && c >= ZERO && c <= NINE;

/**
 * A JSON number of at most 15 digits and a small exponent, as JSON.parse reads it, or NaN: the digits
 * are an exact integer and the power of ten an exact double, so one multiplication or division rounds
 * once, correctly (Clinger's fast path). Anything longer is left to JSON.parse.
 */
function numberAt(b: Uint8Array, i: number): number {
  const negative = b[i] === MINUS;
  if (negative) i++;
  let digits = 0;
  let mantissa = 0;
  let c = b[i];
  if (c === ZERO) {
    c = b[++i];
  } else if (isDigit(c)) {
    while (isDigit(c)) {
      mantissa = mantissa * 10 + (c - ZERO);
      digits++;
      c = b[++i];
    }
  } else return Number.NaN;
  let scale = 0;
  if (c === DOT) {
    c = b[++i];
    if (!isDigit(c)) return Number.NaN;
    while (isDigit(c)) {
      mantissa = mantissa * 10 + (c - ZERO);
      if (mantissa > 0) digits++;
      scale--;
      c = b[++i];
    }
  }
  if (c === 0x65 || c === 0x45) {
    c = b[++i];
    let sign = 1;
    if (c === MINUS || c === PLUS) {
      if (c === MINUS) sign = -1;
      c = b[++i];
    }
    if (!isDigit(c)) return Number.NaN;
    let exponent = 0;
    let exponentDigits = 0;
    while (isDigit(c)) {
      exponent = exponent * 10 + (c - ZERO);
      exponentDigits++;
      c = b[++i];
    }
    if (exponentDigits > 3) return Number.NaN;
    scale += sign * exponent;
  }
  // A digit here follows a leading zero ("01"), which is not JSON; the caller would refuse it anyway.
  if (isDigit(c) || digits > 15 || scale < -22 || scale > 22) return Number.NaN;
  at = i;
  const magnitude =
    scale >= 0
      ? mantissa * (POWERS_OF_TEN[scale] ?? Number.NaN)
      : mantissa / (POWERS_OF_TEN[-scale] ?? Number.NaN);
  return negative ? -magnitude : magnitude;
}

/** null, or a name of 1 to 64 printable ASCII characters without escapes, at `i`. */
function clientAt(b: Uint8Array, i: number): string | null | undefined {
  if (wordAt(b, i, "null")) return null;
  if (b[i] !== QUOTE) return undefined;
  const start = i + 1;
  let end = start;
  for (; end < b.length; end++) {
    const c = b[end] as number;
    if (c === QUOTE) break;
    if (c < SPACE || c > 0x7e || c === BACKSLASH) return undefined;
  }
  const length = end - start;
  if (end >= b.length || length < 1 || length > 64) return undefined;
  at = end + 1;
  if (length === lastClientBytes.length) {
    let same = true;
    for (let k = 0; k < length; k++) {
      if (b[start + k] !== lastClientBytes[k]) {
        same = false;
        break;
      }
    }
    if (same) return lastClient;
  }
  lastClientBytes = b.slice(start, end);
  lastClient = String.fromCharCode(...lastClientBytes);
  return lastClient;
}

/** `{"h": <unit>, "s": <unit>}`, either or both, each once, at `i`, into h and s. */
function colorAt(b: Uint8Array, i: number): boolean {
  if (b[i] !== OPEN) return false;
  i = space(b, i + 1);
  if (b[i] === CLOSE) {
    at = i + 1;
    return true;
  }
  for (;;) {
    if (i + 2 >= b.length || b[i] !== QUOTE || b[i + 2] !== QUOTE) return false;
    const part = b[i + 1];
    i = space(b, i + 3);
    if (b[i] !== COLON) return false;
    const value = numberAt(b, space(b, i + 1));
    if (!isUnit(value)) return false;
    if (part === 0x68 && Number.isNaN(h)) h = value;
    else if (part === 0x73 && Number.isNaN(s)) s = value;
    else return false;
    i = space(b, at);
    if (b[i] === CLOSE) {
      at = i + 1;
      return true;
    }
    if (b[i] !== COMMA) return false;
    i = space(b, i + 1);
  }
}

/** The one key of this length (and first letter) a command may have. */
function keyOfLength(length: number, first: number | undefined): string | undefined {
  switch (length) {
    case 2:
      return "on";
    case 5:
      return "color";
    case 6:
      return "client";
    case 8:
      return "identify";
    case 10:
      return first === 0x62 ? "brightness" : "transition";
    default:
      return undefined;
  }
}

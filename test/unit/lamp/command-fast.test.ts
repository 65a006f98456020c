// The hand-written check for valid commands must give zod's verdict on every command: 200,000 random
// ones from a seeded generator, weighted to the edges (bounds, -0, 1e-9, strings that look like numbers,
// nested objects, extra and prototype-named fields, clients of 64 and 65 characters, 3600 and 3600.01).
import { describe, expect, it } from "vitest";
import {
  CommandError,
  checkWithSchema,
  MAX_PAYLOAD_BYTES,
  parseCommand,
  validCommand,
} from "../../../src/lamp/command.js";

/** mulberry32: small, fast, and the same sequence for the same seed on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A number written as JSON text exactly as given (so -0 and 1e400 reach JSON.parse as themselves). */
class Raw {
  constructor(readonly text: string) {}
}

function toJson(value: unknown): string {
  if (value instanceof Raw) return value.text;
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(toJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

const pick = <T>(next: () => number, list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;

const UNIT_OK = [0, 1, -0, 1e-9, 0.5, 0.01, 0.99, 0.125, 0.999999, 1 - 1e-12, new Raw("1.0"), new Raw("0e5")];
const UNIT_BAD = [
  -1e-9,
  1 + 1e-9,
  1.01,
  -1,
  2,
  new Raw("1e400"),
  new Raw("-1e400"),
  "0.5",
  "NaN",
  "Infinity",
  "",
  null,
  true,
  false,
  [],
  [0.5],
  {},
  { value: 0.5 },
];
const TRANSITION_OK = [0, -0, 1e-9, 0.5, 3600, 3599.99, 1, new Raw("3.6e3")];
const TRANSITION_BAD = [
  3600.01,
  3600 + 1e-9,
  -1e-9,
  -1,
  1e9,
  new Raw("1e400"),
  "1",
  "NaN",
  null,
  true,
  [],
  {},
];
const CLIENT_OK = [
  "a",
  "lamp_ui",
  "c".repeat(63),
  "c".repeat(64),
  "😀".repeat(32),
  "😀".repeat(64),
  `${"c".repeat(63)}😀`,
  "\ud83d".repeat(64),
  " ",
  "null",
  null,
];
const CLIENT_BAD = [
  "",
  "c".repeat(65),
  "😀".repeat(33),
  "x".repeat(5000),
  7,
  0,
  true,
  [],
  {},
  { name: "ui" },
];
const EXTRA_KEYS = [
  "colour",
  "Brightness",
  "brightness ",
  "v",
  "Identify",
  "__proto__",
  "constructor",
  "toString",
  "",
];

function field(
  next: () => number,
  good: readonly unknown[],
  bad: readonly unknown[],
  badRate: number,
): unknown {
  return next() < badRate ? pick(next, bad) : pick(next, good);
}

/** One random command: mostly valid with probability ~0.5, else one or more faults mixed in. */
function command(next: () => number): unknown {
  const badRate = next() < 0.5 ? 0 : 0.3;
  const out: Record<string, unknown> = {};
  const keys = ["on", "color", "brightness", "transition", "client", "identify"].filter(() => next() < 0.6);
  // Fields in any order, as senders write them.
  keys.sort(() => next() - 0.5);
  for (const key of keys) {
    if (key === "on") out.on = next() < badRate ? pick(next, ["true", 1, 0, null, [], {}]) : next() < 0.5;
    if (key === "identify")
      out.identify = next() < badRate ? pick(next, ["true", 1, 0, null, [], {}]) : next() < 0.5;
    if (key === "brightness") out.brightness = field(next, UNIT_OK, UNIT_BAD, badRate);
    if (key === "transition") out.transition = field(next, TRANSITION_OK, TRANSITION_BAD, badRate);
    if (key === "client") out.client = field(next, CLIENT_OK, CLIENT_BAD, badRate);
    if (key === "color") {
      if (next() < badRate / 2) {
        out.color = pick(next, [null, 0.5, "red", [], [0.5, 1], true]);
      } else {
        const color: Record<string, unknown> = {};
        if (next() < 0.7) color.h = field(next, UNIT_OK, UNIT_BAD, badRate);
        if (next() < 0.7) color.s = field(next, UNIT_OK, UNIT_BAD, badRate);
        if (next() < badRate / 2) color[pick(next, ["v", "l", "H", "__proto__", "h "])] = 0.5;
        if (next() < badRate / 4) color.nested = { h: { s: 0.5 } };
        out.color = color;
      }
    }
  }
  if (next() < badRate / 2) out[pick(next, EXTRA_KEYS)] = pick(next, [1, true, null, "x", { h: 0 }]);
  return out;
}

type Verdict = { ok: true; command: unknown } | { ok: false; code: string; message: string; client: unknown };

function verdict(run: () => unknown): Verdict {
  try {
    return { ok: true, command: run() };
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    return { ok: false, code: error.code, message: error.message, client: error.client };
  }
}

describe("validCommand, the fast path, against the schema", () => {
  it("gives zod's verdict on 200,000 seeded random commands, valid ones through the fast path", () => {
    const next = random(22);
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 200_000; i++) {
      const text = toJson(command(next));
      const label = text.length > 300 ? `${text.slice(0, 300)}...` : text;
      const json = JSON.parse(text) as object;
      const reference = verdict(() => checkWithSchema(json));
      const fast = validCommand(JSON.parse(text) as object);
      const bytes = new TextEncoder().encode(text);
      const whole = verdict(() => parseCommand(bytes));
      if (reference.ok) {
        accepted++;
        // Every valid command takes the fast path, with the same value (toEqual tells -0 from 0).
        expect(fast, label).toEqual(reference.command);
      } else {
        rejected++;
        expect(fast, label).toBeUndefined();
      }
      // And parseCommand as a whole says what the schema says, refusals word for word, once a payload
      // is within the 4 KiB refused before parsing.
      if (bytes.byteLength > MAX_PAYLOAD_BYTES) expect(whole).toMatchObject({ code: "payload_too_large" });
      else expect(whole, label).toEqual(reference);
    }
    // Both sides well represented, so the comparison means something.
    expect(accepted).toBeGreaterThan(60_000);
    expect(rejected).toBeGreaterThan(60_000);
  });

  it("keeps -0, 1e-9 and the bounds as they came", () => {
    expect(Object.is(validCommand(JSON.parse('{"brightness": -0}'))?.brightness, -0)).toBe(true);
    expect(validCommand(JSON.parse('{"transition": 1e-9}'))).toEqual({ transition: 1e-9 });
    expect(validCommand(JSON.parse('{"transition": 3600}'))).toEqual({ transition: 3600 });
    expect(validCommand(JSON.parse('{"transition": 3600.01}'))).toBeUndefined();
    expect(validCommand(JSON.parse(`{"client": "${"c".repeat(65)}"}`))).toBeUndefined();
    expect(validCommand(JSON.parse('{"__proto__": {"on": true}}'))).toBeUndefined();
  });
});

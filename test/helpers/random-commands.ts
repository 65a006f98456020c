// Random LAMPI commands from a seeded generator, weighted to the edges (bounds, -0, 1e-9, strings that
// look like numbers, nested objects, extra and prototype-named fields, clients of 64 and 65 characters,
// 3600 and 3600.01): the fast paths of command parsing are held to the general one with them.

/** mulberry32: small, fast, and the same sequence for the same seed on every run, so a failure can be replayed. */
export function random(seed: number): () => number {
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
export class Raw {
  constructor(readonly text: string) {}
}

export function toJson(value: unknown): string {
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

export const pick = <T>(next: () => number, list: readonly T[]): T =>
  list[Math.floor(next() * list.length)] as T;

export const UNIT_OK = [
  0,
  1,
  -0,
  1e-9,
  0.5,
  0.01,
  0.99,
  0.125,
  0.999999,
  1 - 1e-12,
  new Raw("1.0"),
  new Raw("0e5"),
];
export const UNIT_BAD = [
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
export const TRANSITION_OK = [0, -0, 1e-9, 0.5, 3600, 3599.99, 1, new Raw("3.6e3")];
export const TRANSITION_BAD = [
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
export const CLIENT_OK = [
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
export const CLIENT_BAD = [
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
export const EXTRA_KEYS = [
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

export function field(
  next: () => number,
  good: readonly unknown[],
  bad: readonly unknown[],
  badRate: number,
): unknown {
  return next() < badRate ? pick(next, bad) : pick(next, good);
}

/** One random command: mostly valid with probability ~0.5, else one or more faults mixed in. */
export function command(next: () => number): unknown {
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

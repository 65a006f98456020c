// The byte scanner is a fast path in front of JSON.parse: whatever it accepts must be exactly what
// JSON.parse and validCommand make of the same bytes, and it must never accept what they refuse. Held to
// them over seeded random commands in random spellings (whitespace, number forms), and over damaged
// copies of them (a byte dropped, changed or added; cut short; trailing text).
import { describe, expect, it } from "vitest";
import { parseCommand, validCommand } from "../../../src/lamp/command.js";
import { scanCommand } from "../../../src/lamp/command-scan.js";
import { command, pick, random, toJson } from "../../helpers/random-commands.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** What the general path makes of the bytes: the valid command, or undefined (refused, or not JSON). */
function reference(bytes: Uint8Array): object | undefined {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  return validCommand(json);
}

const SPACES = [" ", "  ", "\t", "\n", "\r\n", ""];

/** JSON text of `value` with random whitespace between tokens and numbers in random valid spellings. */
function spelled(value: unknown, next: () => number): string {
  const gap = () => (next() < 0.3 ? pick(next, SPACES) : "");
  if (typeof value === "number") return number(value, next);
  if (value !== null && typeof value === "object" && !Array.isArray(value) && !("text" in value)) {
    const entries = Object.entries(value).map(
      ([k, v]) => `${gap()}${JSON.stringify(k)}${gap()}:${gap()}${spelled(v, next)}${gap()}`,
    );
    return `{${entries.join(",")}${entries.length === 0 ? gap() : ""}}`;
  }
  if (Array.isArray(value)) return `[${value.map((v) => spelled(v, next)).join(",")}]`;
  if (value !== null && typeof value === "object" && "text" in value) return String(value.text);
  return JSON.stringify(value);
}

function number(value: number, next: () => number): string {
  if (Object.is(value, -0)) return pick(next, ["-0", "-0.0", "-0e0", "-0E+3"]);
  const plain = JSON.stringify(value);
  const roll = next();
  if (roll < 0.5) return plain;
  if (roll < 0.65) return value.toExponential();
  if (roll < 0.75)
    return value
      .toExponential()
      .toUpperCase()
      .replace("E-", pick(next, ["E-", "e-"]));
  if (roll < 0.85) return plain.includes(".") || plain.includes("e") ? plain : `${plain}.0`;
  if (roll < 0.95)
    return plain.includes("e") ? plain : `${plain}${"0".repeat(1 + Math.floor(next() * 20))}e-0`;
  // Digits past what the fast path takes (15): JSON.parse's to judge.
  return value.toPrecision(1 + Math.floor(next() * 21));
}

const DAMAGE = [...'{}[]:,"\\ \t\n\r\v\f0123456789.-+eEtrufalsn', "\u00a0", "\u00e9", "\x00", "\x7f"];

function damaged(text: string, next: () => number): string {
  const at = Math.floor(next() * (text.length + 1));
  const roll = next();
  if (roll < 0.25) return text.slice(0, at) + text.slice(at + 1);
  if (roll < 0.5) return text.slice(0, at) + pick(next, DAMAGE) + text.slice(at + 1);
  if (roll < 0.75) return text.slice(0, at) + pick(next, DAMAGE) + text.slice(at);
  if (roll < 0.9) return text.slice(0, at);
  return text + pick(next, ["x", "}", " ,", "{}", "0", "\n\n", "\u0000"]);
}

describe("scanCommand, the byte fast path, against JSON.parse and validCommand", () => {
  it("takes the common command in every spelling, with JSON.parse's values, and nothing else", () => {
    const next = random(7);
    let valid = 0;
    let scanned = 0;
    for (let i = 0; i < 150_000; i++) {
      const text = spelled(command(next), next);
      const bytes = encoder.encode(text);
      const want = reference(bytes);
      const got = scanCommand(bytes);
      if (want !== undefined) valid++;
      if (got === undefined) continue;
      scanned++;
      // toEqual tells -0 from 0.
      expect(got, text).toEqual(want);
    }
    // The generator names many senders in emoji or escapes, which go to JSON.parse, as do the
    // spellings of 16 digits and more.
    expect(valid).toBeGreaterThan(50_000);
    expect(scanned).toBeGreaterThan(valid * 0.6);
  });

  it("takes every valid command written plainly in ASCII", () => {
    const next = random(9);
    let plain = 0;
    for (let i = 0; i < 50_000; i++) {
      const text = toJson(command(next));
      if (!/^[\x20-\x7e]*$/.test(text) || text.includes("\\")) continue;
      const bytes = encoder.encode(text);
      const want = reference(bytes);
      if (want === undefined) continue;
      plain++;
      expect(scanCommand(bytes), text).toEqual(want);
    }
    expect(plain).toBeGreaterThan(15_000);
  });

  it("accepts no damaged payload that JSON.parse or validCommand refuses, and reads the rest alike", () => {
    const next = random(8);
    let scanned = 0;
    for (let i = 0; i < 150_000; i++) {
      let text = spelled(command(next), next);
      for (let k = next() < 0.7 ? 1 : 3; k > 0; k--) text = damaged(text, next);
      const bytes = encoder.encode(text);
      const got = scanCommand(bytes);
      if (got === undefined) continue;
      scanned++;
      expect(got, JSON.stringify(text)).toEqual(reference(bytes));
    }
    expect(scanned).toBeGreaterThan(3_000);
  });

  it("reads what LAMPI's UIs send", () => {
    const ui = '{"color": {"h": 0.5, "s": 1.0}, "brightness": 0.8, "on": true, "client": "lamp_ui"}';
    expect(scanCommand(encoder.encode(ui))).toEqual({
      color: { h: 0.5, s: 1 },
      brightness: 0.8,
      on: true,
      client: "lamp_ui",
    });
    expect(scanCommand(encoder.encode('{"on":false}\n'))).toEqual({ on: false });
    expect(scanCommand(encoder.encode("{}"))).toEqual({});
    expect(scanCommand(encoder.encode('{"color":{}, "client": null, "identify": true}'))).toEqual({
      color: {},
      client: null,
      identify: true,
    });
    expect(scanCommand(encoder.encode('{"transition":3.6e3}'))).toEqual({ transition: 3600 });
    expect(Object.is(scanCommand(encoder.encode('{"brightness":-0}'))?.brightness, -0)).toBe(true);
  });

  it("leaves to JSON.parse what it does not take, and parseCommand still explains the refusals", () => {
    for (const text of [
      '{"brightness": 01}',
      '{"brightness": 1.}',
      '{"brightness": .5}',
      '{"brightness": +1}',
      '{"on": true, "on": false}',
      '{"on": true} x',
      '\ufeff{"on": true}',
      '{"\\u006fn": true}',
      '{"client": "caf\\u00e9"}',
      '{"client": "café"}',
      '{"client": ""}',
      `{"client": "${"c".repeat(65)}"}`,
      '{"brightness": 0.1234567890123456}',
      '{"brightness": 1e-400}',
      '{"colour": {"h": 0.5}}',
      '{"color": {"v": 0.5}}',
      '{"on": "true"}',
      "[true]",
      "",
    ]) {
      expect(scanCommand(encoder.encode(text)), text).toBeUndefined();
    }
    // Those JSON.parse takes are still commands, and the others still refused with their reasons.
    expect(parseCommand(encoder.encode('{"client": "café"}'))).toEqual({ client: "café" });
    expect(parseCommand(encoder.encode('{"brightness": 1e-400}'))).toEqual({ brightness: 0 });
    expect(() => parseCommand(encoder.encode('{"brightness": 01}'))).toThrow(/not JSON/);
    expect(() => parseCommand(encoder.encode('{"colour": {"h": 0.5}}'))).toThrow(/unknown field: colour/);
  });

  it("gives each sender its own name, one after another", () => {
    const names = ["lamp_ui", "p", "lamp_ui", "lamp_uj", "x".repeat(64), "lamp_ui"];
    for (const name of names) {
      expect(scanCommand(encoder.encode(`{"client":"${name}"}`))?.client).toBe(name);
    }
  });
});

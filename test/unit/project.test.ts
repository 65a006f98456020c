import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(import.meta.dirname, "../..");
const readme = readFileSync(path.join(root, "README.md"), "utf8");

describe("README and LICENSE", () => {
  // The demo's broker listens on a free port, different every run: a line without -p reaches nothing.
  it("gives every mosquitto_sub and mosquitto_pub line the broker's host and port", () => {
    const lines = [...readme.matchAll(/mosquitto_(?:sub|pub) [^\n`]*/g)].map((m) => m[0]);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/ -h \S+ -p \S+ /);
  });

  it("has a LICENSE with the license package.json names", () => {
    const { license } = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
      license: string;
    };
    expect(license).toBe("MIT");
    const text = readFileSync(path.join(root, "LICENSE"), "utf8");
    expect(text.split("\n")[0]).toBe("MIT License");
    expect(text).toContain("Permission is hereby granted, free of charge");
  });
});

import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type Resource, releaseAll, teardown } from "../../helpers/teardown.js";

describe("releaseAll", () => {
  it("releases newest first: close, stop, end, a function, a temp dir", async () => {
    const order: string[] = [];
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-teardown-"));
    const resources: Resource[] = [
      dir,
      { close: async () => order.push("broker closed"), stop: () => order.push("broker only stopped") },
      { stop: async () => order.push("agent stopped") },
      { end: async () => order.push("client ended") },
      () => order.push("function called"),
    ];
    await releaseAll(resources);
    expect(order).toEqual(["function called", "client ended", "agent stopped", "broker closed"]);
    expect(existsSync(dir)).toBe(false);
    expect(resources).toEqual([]);
  });

  it("releases everything when one fails, then throws the first failure", async () => {
    const released: string[] = [];
    const failing = (name: string) => () => {
      released.push(name);
      throw new Error(`${name} failed`);
    };
    const resources: Resource[] = [
      () => released.push("first"),
      failing("second"),
      failing("third"),
      () => released.push("fourth"),
    ];
    await expect(releaseAll(resources)).rejects.toThrow("third failed");
    expect(released).toEqual(["fourth", "third", "second", "first"]);
  });
});

describe("teardown", () => {
  const track = teardown("each");
  const stopped: string[] = [];

  it("hands back what it tracks", () => {
    const agent = { stop: async () => stopped.push("agent") };
    expect(track(agent)).toBe(agent);
    expect(stopped).toEqual([]);
  });

  it("has released it after the test that tracked it", () => {
    expect(stopped).toEqual(["agent"]);
  });
});

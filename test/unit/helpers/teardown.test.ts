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
  /** teardown() with its release hook caught here, to be run when the test says. */
  function caught() {
    const hooks: (() => Promise<void>)[] = [];
    const track = teardown("each", (hook) => hooks.push(hook));
    return { track, hooks };
  }

  it("registers one release hook and hands back what it tracks, untouched", () => {
    const { track, hooks } = caught();
    const stopped: string[] = [];
    const agent = { stop: async () => stopped.push("agent") };
    expect(track(agent)).toBe(agent);
    expect(hooks).toHaveLength(1);
    expect(stopped).toEqual([]);
  });

  it("releases what it tracked, newest first, when its hook runs, and only once", async () => {
    const { track, hooks } = caught();
    const stopped: string[] = [];
    track({ close: async () => stopped.push("broker") });
    track({ stop: async () => stopped.push("agent") });
    await hooks[0]?.();
    expect(stopped).toEqual(["agent", "broker"]);
    await hooks[0]?.();
    expect(stopped).toEqual(["agent", "broker"]);
  });
});

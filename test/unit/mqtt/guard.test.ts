import { describe, expect, it } from "vitest";
import { FeedbackGuard } from "../../../src/mqtt/guard.js";

const buf = (text: string) => Buffer.from(text, "utf8");

function clock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe("FeedbackGuard: own client", () => {
  it("recognises only its own client id", () => {
    const guard = new FeedbackGuard("lamp-abc", false);
    expect(guard.isOwnClient("lamp-abc")).toBe(true);
    expect(guard.isOwnClient("lamp_ui")).toBe(false);
    expect(guard.isOwnClient("LAMP-ABC")).toBe(false);
    expect(guard.isOwnClient(undefined)).toBe(false);
  });
});

describe("FeedbackGuard: echo ledger", () => {
  it("drops exactly the echo of a published state, and only once", () => {
    const guard = new FeedbackGuard("me", true);
    guard.published('{"on":true}');
    expect(guard.isOwnEcho(buf('{"on":false}'))).toBe(false);
    expect(guard.isOwnEcho(buf('{"on": true}'))).toBe(false); // same meaning, other bytes: not ours
    expect(guard.isOwnEcho(buf('{"on":true}'))).toBe(true);
    expect(guard.isOwnEcho(buf('{"on":true}'))).toBe(false);
  });

  it("remembers nothing when echoes cannot come back", () => {
    const guard = new FeedbackGuard("me", false);
    guard.published("A");
    expect(guard.isOwnEcho(buf("A"))).toBe(false);
  });

  it("drops each of two identical publishes once", () => {
    const guard = new FeedbackGuard("me", true);
    guard.published("A");
    guard.published("A");
    expect(guard.isOwnEcho(buf("A"))).toBe(true);
    expect(guard.isOwnEcho(buf("A"))).toBe(true);
    expect(guard.isOwnEcho(buf("A"))).toBe(false);
  });

  it("forgets older entries once a newer echo arrives (echoes come in publish order)", () => {
    const guard = new FeedbackGuard("me", true);
    guard.published("A");
    guard.published("B");
    guard.published("C");
    expect(guard.isOwnEcho(buf("B"))).toBe(true);
    expect(guard.isOwnEcho(buf("A"))).toBe(false);
    expect(guard.isOwnEcho(buf("C"))).toBe(true);
  });

  it("expires an echo after 10 seconds", () => {
    const time = clock();
    const guard = new FeedbackGuard("me", true, time.now);
    guard.published("A");
    guard.published("B");
    time.advance(10_000);
    expect(guard.isOwnEcho(buf("A"))).toBe(true); // exactly at the limit: still expected
    time.advance(1);
    expect(guard.isOwnEcho(buf("B"))).toBe(false);
  });

  it("keeps at most 64 pending echoes, forgetting the oldest", () => {
    const guard = new FeedbackGuard("me", true);
    for (let i = 0; i < 65; i++) guard.published(`S${i}`);
    expect(guard.isOwnEcho(buf("S0"))).toBe(false);
    expect(guard.isOwnEcho(buf("S1"))).toBe(true);
    expect(guard.isOwnEcho(buf("S64"))).toBe(true);
  });
});

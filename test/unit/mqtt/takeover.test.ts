import { describe, expect, it } from "vitest";
import { SESSION_TAKEN_OVER, TakeoverDetector } from "../../../src/mqtt/takeover.js";

const detector = () => new TakeoverDetector(10_000, 180_000);

describe("TakeoverDetector", () => {
  it("trusts MQTT 5's reason 0x8E at once", () => {
    expect(detector().closed(60_000, SESSION_TAKEN_OVER)).toBe(true);
  });

  it("takes a second close in a row right after connect, with no reason given, for a takeover", () => {
    const d = detector();
    expect(d.closed(1200, undefined)).toBe(false);
    expect(d.closed(2300, undefined)).toBe(true);
  });

  it("does not take a broker stop for one: the attempt after it fails", () => {
    const d = detector();
    expect(d.closed(800, undefined)).toBe(false);
    d.failedAttempt();
    expect(d.closed(800, undefined)).toBe(false);
  });

  it("does not count a session that held, or one the broker closed with another reason", () => {
    const d = detector();
    expect(d.closed(500, undefined)).toBe(false);
    expect(d.closed(30_000, undefined)).toBe(false);
    expect(d.closed(500, undefined)).toBe(false);
    expect(d.closed(500, 0x8b)).toBe(false);
    expect(d.closed(500, undefined)).toBe(false);
  });

  it("once taken over, counts every close as one until the other client stays away", () => {
    const d = detector();
    d.closed(100, SESSION_TAKEN_OVER);
    // The two now swap at their longest delay: our sessions last about as long as the other's wait.
    expect(d.closed(60_000, undefined)).toBe(true);
    expect(d.closed(72_000, undefined)).toBe(true);
    // Far longer than the other's longest delay: it is gone, and a close is a close again.
    expect(d.closed(200_000, undefined)).toBe(false);
    expect(d.closed(60_000, undefined)).toBe(false);
  });

  it("a failed attempt ends the suspicion (the broker is down, not another lamp)", () => {
    const d = detector();
    d.closed(100, SESSION_TAKEN_OVER);
    d.failedAttempt();
    expect(d.closed(60_000, undefined)).toBe(false);
  });
});

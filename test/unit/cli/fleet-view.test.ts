import type { IPublishPacket } from "mqtt";
import { describe, expect, it } from "vitest";
import { FleetView } from "../../../src/cli/fleet-view.js";

const T0 = Date.parse("2026-12-06T12:00:00.000Z");
const retained = { retain: true } as IPublishPacket;
const live = { retain: false } as IPublishPacket;

/** A lamp as a broker holds it: presence 1, its info with a telemetry interval, a state. */
function viewWith(interval: number, start = T0) {
  const view = new FleetView(start);
  view.take("state/a", Buffer.from("1"), retained, start);
  view.take(
    "lamp/a/info",
    Buffer.from(JSON.stringify({ id: "a", telemetry_interval: interval })),
    retained,
    start,
  );
  return view;
}

const presence = (view: FleetView, now: number, horizon?: number) =>
  view.rows(now, horizon).map((row) => [row.presence, row.since]);

describe("the silent rule", () => {
  it("presence 1 and no telemetry for three intervals: silent since watching started", () => {
    const view = viewWith(1);
    expect(presence(view, T0 + 2999)).toEqual([["online", null]]);
    expect(presence(view, T0 + 3000)).toEqual([["silent", "2026-12-06T12:00:00.000Z"]]);
  });

  it("each telemetry message restarts the count; silent since the last one", () => {
    const view = viewWith(1);
    view.take("lamp/a/telemetry", Buffer.from("{}"), live, T0 + 2500);
    expect(presence(view, T0 + 5000)).toEqual([["online", null]]);
    expect(presence(view, T0 + 5500)).toEqual([["silent", "2026-12-06T12:00:02.500Z"]]);
    view.take("lamp/a/telemetry", Buffer.from("{}"), live, T0 + 6000);
    expect(presence(view, T0 + 6000)).toEqual([["online", null]]);
  });

  it("a live presence 1 (the lamp back) counts as heard; an offline lamp is offline, not silent", () => {
    const view = viewWith(1);
    view.take("state/a", Buffer.from("1"), live, T0 + 4000);
    expect(presence(view, T0 + 5000)).toEqual([["online", null]]);
    view.take("state/a", Buffer.from("0"), live, T0 + 5000);
    expect(presence(view, T0 + 60_000)).toEqual([["offline", null]]);
  });

  it("judges only the lamps whose three intervals fit in the horizon; never those that send none", () => {
    expect(presence(viewWith(60), T0 + 10_000, 5000)).toEqual([["online", null]]);
    expect(presence(viewWith(60), T0 + 180_000)).toEqual([["silent", "2026-12-06T12:00:00.000Z"]]);
    expect(presence(viewWith(1), T0 + 3000, 5000)).toEqual([["silent", "2026-12-06T12:00:00.000Z"]]);
    expect(presence(viewWith(0), T0 + 3_600_000)).toEqual([["online", null]]);
    // No info (an older agent): no interval known, no judgement.
    const old = new FleetView(T0);
    old.take("state/a", Buffer.from("1"), retained, T0);
    expect(presence(old, T0 + 3_600_000)).toEqual([["online", null]]);
  });

  it("undecided while a judged lamp has not been heard and is not yet overdue", () => {
    const view = viewWith(1);
    expect(view.undecided(T0 + 100, 5000)).toBe(true);
    view.take("lamp/a/telemetry", Buffer.from("{}"), live, T0 + 900);
    expect(view.undecided(T0 + 900, 5000)).toBe(false);
    const quiet = viewWith(1);
    expect(quiet.undecided(T0 + 3000, 5000)).toBe(false);
    expect(viewWith(60).undecided(T0, 5000)).toBe(false);
  });

  it("a forgotten lamp disappears, telemetry and all", () => {
    const view = viewWith(1);
    view.take("state/a", Buffer.from(""), retained, T0);
    expect(view.take("lamp/a/telemetry", Buffer.from("{}"), live, T0)).toBe(false);
    expect(view.rows(T0 + 10_000)).toEqual([]);
  });
});

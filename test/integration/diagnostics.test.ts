import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { startAgent } from "../helpers/agent.js";
import { startBroker, type TestBroker } from "../helpers/broker.js";
import { Recorder, sleep } from "../helpers/mqtt-client.js";
import { teardown } from "../helpers/teardown.js";

/** A sysfs and proc tree with a thermal zone at 47.5 °C and wlan0 at -58 dBm. */
function fakePi(): string {
  const root = mkdtempSync(path.join(tmpdir(), "lamp-diag-root-"));
  mkdirSync(path.join(root, "class/thermal/thermal_zone0"), { recursive: true });
  writeFileSync(path.join(root, "class/thermal/thermal_zone0/temp"), "47500\n");
  mkdirSync(path.join(root, "net"));
  writeFileSync(
    path.join(root, "net/wireless"),
    "Inter-| sta-|   Quality        |\n face | tus | link level noise |\n wlan0: 0000   52.  -58.  -256  0 0 0 0 0 0\n",
  );
  return root;
}

describe("telemetry on a real broker", () => {
  const trackAll = teardown("all");
  const track = teardown("each");
  let broker: TestBroker;
  beforeAll(async () => {
    broker = trackAll(await startBroker());
  });

  it("arrives every TELEMETRY_INTERVAL seconds, not retained, with the machine's figures", async () => {
    const root = fakePi();
    const running = track(
      await startAgent(broker.url, { TELEMETRY_INTERVAL: "1", SYSFS_ROOT: root }, { procRoot: root }),
    );
    const topic = `lamp/${running.id}/telemetry`;
    const watcher = track(await Recorder.connect(broker.url, [topic]));
    const first = await watcher.wait(topic);
    const third = await watcher.wait(topic, () => watcher.on(topic).length >= 3);
    const [a, b, c] = watcher.on(topic);
    // About a second apart (scheduling slack either way, never a burst nor a long gap).
    for (const [x, y] of [
      [a, b],
      [b, c],
    ]) {
      expect((y?.at ?? 0) - (x?.at ?? 0)).toBeGreaterThan(600);
      expect((y?.at ?? 0) - (x?.at ?? 0)).toBeLessThan(2500);
    }
    expect(first.retain).toBe(false);
    expect(JSON.parse(third.text)).toEqual({
      uptime_s: expect.any(Number),
      reconnects: 0,
      rss_mib: expect.any(Number),
      cpu_temp_c: 47.5,
      wifi_rssi_dbm: -58,
      load1: expect.any(Number),
    });
    // Nothing kept on the broker for a late subscriber.
    const late = track(await Recorder.connect(broker.url, [topic]));
    await sleep(300);
    expect(late.on(topic).every((m) => !m.retain)).toBe(true);
  });

  it("off a Pi (no thermal zone, no wlan0) both figures are null, and TELEMETRY_INTERVAL=0 sends none", async () => {
    const empty = mkdtempSync(path.join(tmpdir(), "lamp-diag-empty-"));
    const running = track(
      await startAgent(broker.url, { TELEMETRY_INTERVAL: "1", SYSFS_ROOT: empty }, { procRoot: empty }),
    );
    const quiet = track(await startAgent(broker.url, { TELEMETRY_INTERVAL: "0" }));
    const topic = `lamp/${running.id}/telemetry`;
    const quietTopic = `lamp/${quiet.id}/telemetry`;
    const watcher = track(await Recorder.connect(broker.url, [topic, quietTopic, `lamp/${quiet.id}/info`]));
    const message = JSON.parse((await watcher.wait(topic)).text);
    expect(message).toMatchObject({ cpu_temp_c: null, wifi_rssi_dbm: null });
    expect(JSON.parse((await watcher.wait(`lamp/${quiet.id}/info`)).text)).toMatchObject({
      telemetry_interval: 0,
    });
    await sleep(1500);
    expect(watcher.on(quietTopic)).toEqual([]);
  });
});

import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { sample } from "../../../src/diagnostics/sample.js";
import { readCpuTemperature } from "../../../src/diagnostics/thermal.js";
import { readWifiSignal } from "../../../src/diagnostics/wireless.js";

const HEADER =
  "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n" +
  " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n";

function fakeRoot(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), "lamp-diag-"));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    writeFileSync(path.join(root, name), text);
  }
  return root;
}

const ZONE = "class/thermal/thermal_zone0/temp";

describe("CPU temperature from the thermal zone", () => {
  it("reads millidegrees as °C with one decimal", () => {
    expect(readCpuTemperature(fakeRoot({ [ZONE]: "48312\n" }))).toBe(48.3);
    expect(readCpuTemperature(fakeRoot({ [ZONE]: "-5000\n" }))).toBe(-5);
  });

  it("is null without a thermal zone (off a Pi)", () => {
    expect(readCpuTemperature(fakeRoot({}))).toBeNull();
    expect(readCpuTemperature(fakeRoot({ "class/thermal/cooling_device0/type": "fan\n" }))).toBeNull();
  });

  it("is null for a malformed or impossible figure", () => {
    expect(readCpuTemperature(fakeRoot({ [ZONE]: "" }))).toBeNull();
    expect(readCpuTemperature(fakeRoot({ [ZONE]: "hot\n" }))).toBeNull();
    expect(readCpuTemperature(fakeRoot({ [ZONE]: "48.3\n" }))).toBeNull();
    expect(readCpuTemperature(fakeRoot({ [ZONE]: "999999\n" }))).toBeNull();
  });
});

describe("Wi-Fi signal from /proc/net/wireless", () => {
  it("reads wlan0's level in dBm", () => {
    const root = fakeRoot({
      "net/wireless": `${HEADER} wlan0: 0000   70.  -40.  -256        0      0      0      0      0        0\n`,
    });
    expect(readWifiSignal(root)).toBe(-40);
  });

  it("finds wlan0 among other interfaces, and a level without the update dot", () => {
    const root = fakeRoot({
      "net/wireless":
        `${HEADER}  wlan1: 0000   50.  -61.  -256        0      0      0      0      0        0\n` +
        ` wlan0: 0000   38  -72  -256        0      0      0      3      0        0\n`,
    });
    expect(readWifiSignal(root)).toBe(-72);
    expect(readWifiSignal(root, "wlan1")).toBe(-61);
  });

  it("is null with no wlan0 (wired), no file (not Linux), or only the header (Wi-Fi down)", () => {
    expect(
      readWifiSignal(fakeRoot({ "net/wireless": `${HEADER}  wlan1: 0000   50.  -61.  -256  0 0 0 0 0 0\n` })),
    ).toBeNull();
    expect(readWifiSignal(fakeRoot({}))).toBeNull();
    expect(readWifiSignal(fakeRoot({ "net/wireless": HEADER }))).toBeNull();
  });

  it("is null for a malformed line or a level that is not dBm", () => {
    for (const line of [
      " wlan0: 0000\n",
      " wlan0: 0000   70.  strong  -256\n",
      " wlan0: 0000   0.   0.   0.  0 0 0 0 0 0\n",
      " wlan0: 0000   70.  216.  0  0 0 0 0 0 0\n",
    ]) {
      expect(readWifiSignal(fakeRoot({ "net/wireless": `${HEADER}${line}` })), line).toBeNull();
    }
    expect(readWifiSignal(fakeRoot({ "net/wireless": "\u0000\u0001garbage" }))).toBeNull();
  });
});

describe("one reading", () => {
  it("takes every figure from its source, null where the machine cannot tell", () => {
    const root = fakeRoot({ [ZONE]: "51000\n" });
    const reading = sample({ sysfsRoot: root, procRoot: root, uptime: () => 3725.9 });
    expect(reading).toEqual({
      uptime_s: 3725,
      rss_mib: expect.any(Number),
      cpu_temp_c: 51,
      wifi_rssi_dbm: null,
      load1: expect.any(Number),
    });
    expect(reading.rss_mib).toBeGreaterThan(1);
    expect(reading.load1).toBeGreaterThanOrEqual(0);
  });
});

import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { defaultLampId } from "../../src/lamp-id.js";
import { teardown } from "../helpers/teardown.js";

const track = teardown("each");
let sysfs: string;
beforeEach(() => {
  sysfs = track(mkdtempSync(path.join(tmpdir(), "lamp-id-")));
});

/** An interface as /sys/class/net shows it; `device` only for real hardware. */
function iface(name: string, mac: string, device = true): void {
  const dir = path.join(sysfs, "class", "net", name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "address"), `${mac}\n`);
  if (device) {
    mkdirSync(path.join(sysfs, "devices", name), { recursive: true });
    symlinkSync(`../../../devices/${name}`, path.join(dir, "device"));
  }
}

describe("the default LAMP_ID", () => {
  it("is the MAC of the board's first network device by name, whatever its link state", () => {
    // A Pi 4 whose Wi-Fi has not associated yet and whose Ethernet has no cable: neither has an
    // address, and both are still the board's.
    iface("wlan0", "dc:a6:32:00:00:02");
    iface("eth0", "DC:A6:32:00:00:01");
    iface("lo", "00:00:00:00:00:00", false);
    expect(defaultLampId(sysfs)).toBe("dca632000001");
  });

  it("passes over virtual interfaces and addresses that are not MACs", () => {
    iface("br0", "02:42:00:00:00:09", false);
    iface("docker0", "02:42:00:00:00:0a", false);
    iface("can0", "", true);
    iface("wlan0", "b8:27:eb:00:00:03");
    expect(defaultLampId(sysfs)).toBe("b827eb000003");
  });

  it("falls back to a valid id where sysfs shows no device", () => {
    expect(defaultLampId(path.join(sysfs, "nowhere"))).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
  });

  it("is what the configuration uses when LAMP_ID is unset, read under SYSFS_ROOT", () => {
    iface("eth0", "dc:a6:32:00:00:01");
    const cwd = track(mkdtempSync(path.join(tmpdir(), "lamp-id-cwd-")));
    const { config } = loadConfig({ env: { SYSFS_ROOT: sysfs }, cwd, dotenv: false });
    expect(config.lampId).toBe("dca632000001");
    expect(config.topics.presence).toBe("state/dca632000001");
  });

  it("reads SYSFS_ROOT from the .env file as well", () => {
    iface("eth0", "dc:a6:32:00:00:01");
    const cwd = track(mkdtempSync(path.join(tmpdir(), "lamp-id-cwd-")));
    writeFileSync(path.join(cwd, ".env"), `SYSFS_ROOT=${sysfs}\n`);
    expect(loadConfig({ env: {}, cwd }).config.lampId).toBe("dca632000001");
  });
});

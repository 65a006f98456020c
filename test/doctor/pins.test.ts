import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { pinReport } from "../../src/doctor/pins.js";
import { nodeSysfs } from "../../src/drivers/sysfs.js";
import { buildTree, PI4_LAMPI_66, PI5_BARE_612 } from "../helpers/fake-sysfs.js";
import { teardown } from "../helpers/teardown.js";

/**
 * The doctor's view of write access, for the service user `lamp-agent` of a fake /etc, judged from the
 * owner, group and mode of the files the driver would write (not from who runs the test).
 */
const track = teardown("each");
const SERVICE_UID = 64_999;

function fakeEtc(options: { rule: boolean; member: boolean; gpioGid: number }): string {
  const etc = track(mkdtempSync(path.join(tmpdir(), "lamp-etc-")));
  mkdirSync(path.join(etc, "udev", "rules.d"), { recursive: true });
  if (options.rule) writeFileSync(path.join(etc, "udev", "rules.d", "99-lamp-agent.rules"), "");
  writeFileSync(
    path.join(etc, "passwd"),
    `root:x:0:0::/root:/bin/sh\nlamp-agent:x:${SERVICE_UID}:64998::/:/usr/sbin/nologin\n`,
  );
  writeFileSync(
    path.join(etc, "group"),
    `root:x:0:\nlamp-agent:x:64998:\ngpio:x:${options.gpioGid}:${options.member ? "pi,lamp-agent" : "pi"}\n`,
  );
  return etc;
}

const report = (root: string, etcRoot: string) =>
  pinReport({ pins: [19, 26, 13], sysfsRoot: root }, { io: nodeSysfs, etcRoot, stat });

describe("lamp-agent --check: can the service user drive the pins?", () => {
  it("says which files lamp-agent cannot write and what fixes it, and fails", async () => {
    const root = track(buildTree(PI4_LAMPI_66));
    // The files belong to the test runner's group, as udev would give them to gpio.
    const gid = (await stat(path.join(root, "class", "pwm", "pwmchip2", "export"))).gid;
    const etc = fakeEtc({ rule: false, member: false, gpioGid: gid });
    const result = await report(root, etc);
    expect(result.ok).toBe(false);
    expect(result.lines).toContain(
      "  udev rule 99-lamp-agent.rules: missing: sudo install -m 0644 hardware/99-lamp-agent.rules /etc/udev/rules.d/ && sudo udevadm trigger",
    );
    expect(result.lines).toContain(
      "  group gpio: lamp-agent is not a member: sudo usermod -aG gpio lamp-agent",
    );
    expect(
      result.lines.filter((l) => /cannot write .*\/export \(owner \d+, group \d+, mode 644\)/.test(l)),
    ).toHaveLength(3);
  });

  it("is satisfied once the rule is there, lamp-agent is in gpio and the files are group-writable", async () => {
    const root = track(buildTree(PI4_LAMPI_66));
    for (const chip of [1, 2, 3])
      chmodSync(path.join(root, "class", "pwm", `pwmchip${chip}`, "export"), 0o664);
    const gid = (await stat(path.join(root, "class", "pwm", "pwmchip2", "export"))).gid;
    const result = await report(root, fakeEtc({ rule: true, member: true, gpioGid: gid }));
    expect(result.lines).toContain("  udev rule 99-lamp-agent.rules: installed");
    expect(result.lines).toContain("  group gpio: lamp-agent is a member");
    expect(result.lines).toContain("  write access: lamp-agent can write every file it needs");
    expect(result.ok).toBe(true);
  });

  it("without channels there is nothing to write yet: only the lines that give them", async () => {
    const root = track(buildTree(PI5_BARE_612));
    const result = await report(root, fakeEtc({ rule: true, member: true, gpioGid: 997 }));
    expect(result.ok).toBe(false);
    expect(result.lines.some((l) => l.includes("write access"))).toBe(false);
    expect(result.lines).toContain("    dtoverlay=pwm-pio,gpio=26");
  });
});

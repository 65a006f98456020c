import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { handRunConflict, serviceIsRunning } from "../../../src/systemd/service.js";
import { teardown } from "../../helpers/teardown.js";

const track = teardown("each");
let marker: string;
beforeEach(() => {
  const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-service-")));
  marker = path.join(dir, "invocation:lamp-agent.service");
});
const running = () => symlinkSync("6a1e5b2c0f9d4e7a8b3c1d2e3f4a5b6c", marker);
const INSTALLED = "/etc/lamp-agent/lamp-agent.env";

describe("the agent run by hand beside the installed service", () => {
  it("sees the service by systemd's dangling invocation link", () => {
    expect(serviceIsRunning(marker)).toBe(false);
    running();
    expect(serviceIsRunning(marker)).toBe(true);
  });

  it("refuses to drive the pins the service drives, and says what to do instead", () => {
    running();
    const conflict = handRunConflict({ env: {}, driver: "sysfs-pwm", file: ".env", marker });
    expect(conflict).toMatch(/^lamp-agent\.service is running and drives this lamp/);
    expect(conflict).toContain("journalctl -u lamp-agent -f");
    expect(conflict).toContain("sudo systemctl stop lamp-agent");
  });

  it("refuses the installed configuration even with the mock: same client id on the broker", () => {
    running();
    expect(handRunConflict({ env: {}, driver: "mock", file: INSTALLED, marker })).toContain(
      "the broker's client id",
    );
  });

  it("lets a mock with its own configuration run, the service itself start, and anything run without it", () => {
    running();
    expect(handRunConflict({ env: {}, driver: "mock", file: ".env", marker })).toBeUndefined();
    expect(
      handRunConflict({ env: { INVOCATION_ID: "x" }, driver: "auto", file: undefined, marker }),
    ).toBeUndefined();
    expect(
      handRunConflict({ env: {}, driver: "auto", file: INSTALLED, marker: `${marker}.gone` }),
    ).toBeUndefined();
  });
});

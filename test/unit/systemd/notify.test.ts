import { describe, expect, it } from "vitest";
import { createNotifier, watchdogIntervalMs } from "../../../src/systemd/notify.js";
import { captureLogger } from "../../helpers/log.js";

describe("watchdogIntervalMs", () => {
  it("is half of WATCHDOG_USEC, in milliseconds", () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000" })).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "3000" })).toBe(1);
  });

  it("is off without a usable WATCHDOG_USEC", () => {
    expect(watchdogIntervalMs({})).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "0" })).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "-5" })).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "soon" })).toBeUndefined();
  });

  it("belongs to the process WATCHDOG_PID names", () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "2000000", WATCHDOG_PID: "42" }, 42)).toBe(1000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: "2000000", WATCHDOG_PID: "43" }, 42)).toBeUndefined();
  });
});

describe("createNotifier without systemd", () => {
  it("is a silent no-op when NOTIFY_SOCKET is unset", async () => {
    const { logger, lines } = captureLogger();
    const notifier = createNotifier({ WATCHDOG_USEC: "1000" }, logger, { command: "/nonexistent/notify" });
    expect(notifier.enabled).toBe(false);
    notifier.ready("up");
    notifier.startWatchdog();
    notifier.stopping();
    await notifier.close();
    expect(lines).toEqual([]);
  });

  it("says once, as a warning, why systemd cannot be told", async () => {
    const { logger, lines } = captureLogger();
    const notifier = createNotifier({ NOTIFY_SOCKET: "/run/nothing-here" }, logger, {
      command: "/nonexistent/systemd-notify",
    });
    notifier.ready();
    notifier.status("again");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await notifier.close();
    expect(lines.map((line) => line.level)).toEqual([40, 20]);
    expect(String(lines[0]?.reason)).toContain("/nonexistent/systemd-notify not found");
  });
});

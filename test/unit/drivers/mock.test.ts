import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DriverError } from "../../../src/drivers/driver.js";
import { MAX_RECORDED, MockDriver, mockDriver, swatch } from "../../../src/drivers/mock.js";
import { silentLogger } from "../../helpers/log.js";

const options = (pins: readonly number[] = [19, 26, 13], traceFile?: string) => ({
  pins,
  activeLow: false,
  frequency: 1000,
  sysfsRoot: "/sys",
  traceFile,
  logger: silentLogger(),
});

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(DriverError);
    return (error as DriverError).code;
  }
  throw new Error("expected a DriverError");
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("MockDriver", () => {
  it("records the first write to every pin, then only the pins that change", async () => {
    const driver = new MockDriver(options());
    await driver.open([0, 0.5, 1]);
    await driver.write([0, 0.6, 1]);
    await driver.write([0, 0.6, 1]);
    expect(driver.writes.map(({ pin, duty }) => [pin, duty])).toEqual([
      [19, 0],
      [26, 0.5],
      [13, 1],
      [26, 0.6],
    ]);
    expect(driver.duties).toEqual([0, 0.6, 1]);
    for (const write of driver.writes) expect(write.t).toBeGreaterThanOrEqual(0);
  });

  it("rejects a write before open and after close", async () => {
    const driver = new MockDriver(options([5]));
    expect(await codeOf(driver.write([0.5]))).toBe("closed");
    await driver.open([0]);
    await driver.close();
    expect(await codeOf(driver.write([0.5]))).toBe("closed");
    expect(driver.duties).toEqual([0]);
  });

  it("rejects a second open, and reopening after close", async () => {
    const driver = new MockDriver(options([5]));
    await driver.open([0]);
    expect(await codeOf(driver.open([0]))).toBe("already_open");
    await driver.close();
    expect(await codeOf(driver.open([0]))).toBe("closed");
  });

  it("closes twice without complaint: the second close does nothing, and writes stay refused", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-mock-"));
    dirs.push(dir);
    const trace = path.join(dir, "trace.jsonl");
    const driver = new MockDriver(options([5], trace));
    await driver.open([0.5]);
    await driver.close();
    const written = readFileSync(trace, "utf8");
    const writes = driver.writes.length;
    await driver.close();
    expect(readFileSync(trace, "utf8")).toBe(written);
    expect(driver.writes).toHaveLength(writes);
    expect(driver.duties).toEqual([0.5]);
    expect(await codeOf(driver.write([1]))).toBe("closed");
    expect(driver.writes).toHaveLength(writes);
  });

  it.each([1.01, -0.01, Number.NaN, Number.POSITIVE_INFINITY])(
    "rejects duty %s and keeps the pins as they were",
    async (duty) => {
      const driver = new MockDriver(options([5, 6, 7]));
      await driver.open([0.1, 0.2, 0.3]);
      expect(await codeOf(driver.write([0.1, duty, 0.3]))).toBe("invalid_duty");
      expect(driver.duties).toEqual([0.1, 0.2, 0.3]);
      expect(driver.writes).toHaveLength(3);
    },
  );

  it("rejects an invalid initial duty at open, and the wrong number of duties", async () => {
    expect(await codeOf(new MockDriver(options([5, 6, 7])).open([0, 2, 0]))).toBe("invalid_duty");
    const driver = new MockDriver(options([5, 6, 7]));
    expect(await codeOf(driver.open([0, 0]))).toBe("invalid_duty");
    // As with real pins, a failed open leaves the driver closed: a new one is needed.
    expect(await codeOf(driver.open([0, 0, 0]))).toBe("closed");
    const fresh = new MockDriver(options([5, 6, 7]));
    await fresh.open([0, 0, 0]);
    expect(await codeOf(fresh.write([0, 0, 0, 0]))).toBe("invalid_duty");
  });

  it("refuses a call while another is in flight, as the contract forbids, and keeps the first", async () => {
    const driver = new MockDriver(options());
    const opening = driver.open([0, 0, 0]);
    expect(await codeOf(driver.write([1, 1, 1]))).toBe("busy");
    await opening;
    const first = driver.write([0.5, 0, 0]);
    expect(await codeOf(driver.write([0, 0.5, 0]))).toBe("busy");
    expect(await codeOf(driver.close())).toBe("busy");
    await first;
    expect(driver.duties).toEqual([0.5, 0, 0]);
    await driver.close();
    expect(await codeOf(driver.write([0, 0, 0]))).toBe("closed");
  });

  it("completes asynchronously: nothing reaches the pins within the caller's turn", async () => {
    const driver = new MockDriver(options());
    const opening = driver.open([0.1, 0.2, 0.3]);
    expect(driver.writes).toEqual([]);
    await opening;
    const writing = driver.write([0.4, 0.5, 0.6]);
    expect(driver.duties).toEqual([0.1, 0.2, 0.3]);
    await writing;
    expect(driver.duties).toEqual([0.4, 0.5, 0.6]);
  });

  it("appends one JSON line per pin write to the trace file", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lamp-mock-"));
    dirs.push(dir);
    const trace = path.join(dir, "trace.jsonl");
    const driver = new MockDriver(options([19, 26, 13], trace));
    await driver.open([0, 0, 0]);
    await driver.write([0.25, 0, 0]);
    await driver.write([0.25, 0, 0]);
    const lines = readFileSync(trace, "utf8")
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines.map(({ pin, duty }) => ({ pin, duty }))).toEqual([
      { pin: 19, duty: 0 },
      { pin: 26, duty: 0 },
      { pin: 13, duty: 0 },
      { pin: 19, duty: 0.25 },
    ]);
    for (const line of lines) expect(Object.keys(line).sort()).toEqual(["duty", "pin", "t"]);
  });

  it("is always available, and creates mock drivers", async () => {
    expect(await mockDriver.probe(options())).toMatchObject({ ok: true });
    const driver = mockDriver.create(options());
    expect(driver).toBeInstanceOf(MockDriver);
    expect(driver.name).toBe("mock");
    expect(driver.dimmable).toBe(true);
  });
});

describe("swatch", () => {
  it("labels the duties and whether the lamp is lit", () => {
    expect(swatch([1, 0, 0])).toContain("48;2;255;0;0m");
    expect(swatch([1, 0, 0])).toContain("lit");
    expect(swatch([1, 0, 0])).toContain("duty 1.000 0.000 0.000");
    expect(swatch([0])).toContain("dark");
    expect(swatch([1])).toContain("48;2;255;255;255m");
  });
});

describe("MockDriver memory", () => {
  it("keeps only the newest MAX_RECORDED writes, so a long demo does not grow without end", async () => {
    const driver = new MockDriver(options([18]));
    await driver.open([0]);
    for (let i = 1; i <= MAX_RECORDED + 500; i++) await driver.write([(i % 1000) / 1000]);
    expect(driver.writes).toHaveLength(MAX_RECORDED);
    // The open's write and the first 500 are the ones dropped, in order.
    expect(driver.writes[0]?.duty).toBe(0.501);
    expect(driver.writes.at(-1)?.duty).toBe(((MAX_RECORDED + 500) % 1000) / 1000);
  });
});

import { describe, expect, it } from "vitest";
import { createLogger, toText } from "../../src/log.js";

const line = (fields: Record<string, unknown>) =>
  JSON.stringify({
    level: 30,
    time: Date.UTC(2024, 0, 2, 3, 4, 5, 678),
    pid: 1,
    hostname: "pi",
    msg: "hello",
    ...fields,
  });

function capture() {
  const chunks: string[] = [];
  const stream = {
    write(chunk: string | Uint8Array): boolean {
      chunks.push(String(chunk));
      return true;
    },
  };
  return { chunks, stream };
}

describe("toText", () => {
  it("gives time, level and message, then the fields, dropping pid and hostname", () => {
    expect(toText(line({ topic: "lamp/x", n: 3, ok: true }), false)).toBe(
      "03:04:05.678 INFO  hello topic=lamp/x n=3 ok=true\n",
    );
  });

  it("quotes strings with spaces, quotes or equals signs", () => {
    expect(toText(line({ a: "b c", d: 'e"f', g: "h=i" }), false)).toBe(
      '03:04:05.678 INFO  hello a="b c" d="e\\"f" g="h=i"\n',
    );
  });

  it("shows only the message of a serialised error", () => {
    expect(toText(line({ err: { type: "Error", message: "EIO: i/o error", stack: "..." } }), false)).toBe(
      '03:04:05.678 INFO  hello err="EIO: i/o error"\n',
    );
  });

  it("names each level", () => {
    expect(toText(line({ level: 40 }), false)).toMatch(/^\S+ WARN {2}hello\n$/);
    expect(toText(line({ level: 50 }), false)).toMatch(/^\S+ ERROR hello\n$/);
    expect(toText(line({ level: 20 }), false)).toMatch(/^\S+ DEBUG hello\n$/);
  });

  it("prefixes the syslog priority for journald, without a timestamp", () => {
    expect(toText(line({ level: 50, code: "x" }), true)).toBe("<3>hello code=x\n");
    expect(toText(line({ level: 40 }), true)).toBe("<4>hello\n");
    expect(toText(line({ level: 30 }), true)).toBe("<6>hello\n");
    expect(toText(line({ level: 20 }), true)).toBe("<7>hello\n");
    expect(toText(line({ level: 60 }), true)).toBe("<2>hello\n");
  });
});

describe("createLogger", () => {
  it("writes JSON lines at or above its level, without pid and hostname", () => {
    const { chunks, stream } = capture();
    const logger = createLogger({ level: "info", format: "json", stream });
    logger.debug("hidden");
    logger.info({ pin: 19 }, "shown");
    expect(chunks).toHaveLength(1);
    const entry = JSON.parse(chunks[0] ?? "");
    expect(entry).toMatchObject({ level: 30, msg: "shown", pin: 19 });
    expect(entry).not.toHaveProperty("pid");
    expect(entry).not.toHaveProperty("hostname");
  });

  it("writes text when asked", () => {
    const { chunks, stream } = capture();
    createLogger({ level: "debug", format: "text", stream }).warn({ n: 1 }, "careful");
    expect(chunks[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}careful n=1\n$/);
  });

  it("writes JSON in auto mode to a stream that is not a terminal", () => {
    const { chunks, stream } = capture();
    createLogger({ level: "info", format: "auto", stream }).info("x");
    expect(JSON.parse(chunks[0] ?? "")).toMatchObject({ msg: "x" });
  });

  it("writes nothing when silent", () => {
    const { chunks, stream } = capture();
    createLogger({ level: "silent", format: "json", stream }).fatal("nothing");
    expect(chunks).toEqual([]);
  });
});

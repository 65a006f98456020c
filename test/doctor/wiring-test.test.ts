import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { wiringTest } from "../../src/doctor/wiring-test.js";
import { teardown } from "../helpers/teardown.js";

const track = teardown("each");

describe("lamp-agent --test beside a service it cannot reach", () => {
  it("refuses to fight the running service for the pins, and says how to run the test", async () => {
    const dir = track(mkdtempSync(path.join(tmpdir(), "lamp-wiring-")));
    const marker = path.join(dir, "invocation:lamp-agent.service");
    // As systemd makes it: a link to the invocation id, which is no file (it dangles).
    symlinkSync("6a1e5b2c0f9d4e7a8b3c1d2e3f4a5b6c", marker);
    const trace = path.join(dir, "trace.jsonl");
    const { config } = loadConfig({
      env: {
        LAMP_ID: "wiring",
        MQTT_URL: "mqtt://127.0.0.1:1",
        GPIO_DRIVER: "mock",
        MOCK_GPIO_TRACE: trace,
        STATE_FILE: path.join(dir, "state.json"),
      },
      cwd: dir,
      dotenv: false,
    });
    const out = new PassThrough();
    let text = "";
    out.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    const code = await wiringTest(config, { out, serviceMarker: marker, stepMs: 1, timeoutMs: 500 });
    expect(code).toBe(1);
    expect(text).toContain("broker: nothing accepts connections at 127.0.0.1:1");
    expect(text).toContain(
      "lamp-agent.service is running and holds the pins, but does not answer on the broker: " +
        "stop it (sudo systemctl stop lamp-agent), run lamp-agent --test, then start it again",
    );
    expect(text).not.toContain("red");
  });
});

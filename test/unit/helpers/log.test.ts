import { describe, expect, it } from "vitest";
import { captureLogger, LEVEL } from "../../helpers/log.js";

describe("captureLogger", () => {
  it("collects every line at or above its level, parsed, as it is written", () => {
    const { logger, lines } = captureLogger("info");
    logger.debug("hidden");
    logger.info({ pin: 19 }, "shown");
    expect(lines).toEqual([expect.objectContaining({ level: LEVEL.info, msg: "shown", pin: 19 })]);
    logger.warn("careful");
    expect(lines.map((line) => line.msg)).toEqual(["shown", "careful"]);
  });

  it("captures debug by default", () => {
    const { logger, lines } = captureLogger();
    logger.debug("detail");
    expect(lines).toMatchObject([{ level: LEVEL.debug, msg: "detail" }]);
  });
});

import type { Logger } from "./log.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_CONFIG = 2;

/**
 * One handler for SIGTERM and SIGINT, guarded: a second signal while stopping is logged, not a second
 * stop. Exits 0 once `stop` finished, 1 if it threw.
 */
export function onSignals(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, "already stopping");
      return;
    }
    stopping = true;
    logger.info({ signal }, "stopping");
    stop().then(
      () => process.exit(EXIT_OK),
      (error: unknown) => {
        logger.fatal({ err: error }, "could not stop cleanly");
        process.exit(EXIT_FAILURE);
      },
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}

/** A bug must not leave a half-working agent: log it and exit non-zero, so systemd restarts us. */
export function exitOnBugs(logger: Logger): void {
  process.on("uncaughtException", (error) => {
    logger.fatal({ err: error }, "bug: uncaught exception");
    process.exit(EXIT_FAILURE);
  });
  process.on("unhandledRejection", (error) => {
    logger.fatal({ err: error }, "bug: unhandled promise rejection");
    process.exit(EXIT_FAILURE);
  });
}

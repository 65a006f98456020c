import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// `npm run test:fleet` (part of `npm test`): real 3-node clusters (NATS, Aedes over Redis) and fleets of
// built agents. Each file starts and kills brokers on its own timing, so the files run one at a time,
// after the rest, never beside other tests that load the machine's two cores.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/fleet/**/*.test.ts"],
    // Builds dist/ when stale, and keeps the run's temp dirs in one dir it removes at the end.
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    fileParallelism: false,
  },
});

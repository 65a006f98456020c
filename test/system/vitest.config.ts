import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// `npm run test:system`: boots Debian with systemd in a container and installs the agent in it as an
// operator would. Needs root and minutes, so it is kept out of the default `test/**/*.test.ts` run.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/system/**/*.system.ts"],
    // Every step waits on a bounded condition of its own; these only catch a wedged step.
    testTimeout: 15 * 60_000,
    hookTimeout: 30 * 60_000,
    pool: "forks",
    fileParallelism: false,
    // The steps build on each other: after the first failure the rest would only add noise.
    bail: 1,
  },
});

import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// `npm run test:emulated`: boots an emulated arm64 board (QEMU, Debian's kernel) and installs the agent on
// it as an operator would. Needs root and minutes, so it is kept out of the default run.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/emulated/**/*.emulated.ts"],
    // Every step waits on a bounded condition of its own; these only catch a wedged step.
    testTimeout: 10 * 60_000,
    hookTimeout: 25 * 60_000,
    pool: "forks",
    fileParallelism: false,
    // The steps build on each other: after the first failure the rest would only add noise.
    bail: 1,
  },
});

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real clusters and fleets: run on their own, one file at a time (test/fleet/vitest.config.ts).
    exclude: ["test/fleet/**", "**/node_modules/**"],
    globalSetup: ["test/global-setup.ts"],
    // Integration and e2e tests spawn brokers and agents; two cores are shared with them.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    coverage: {
      provider: "v8",
      include: ["src/**/*.ts"],
      // Entry points run as real processes in test/e2e, where in-process coverage cannot see them.
      exclude: ["src/main.ts", "src/cli/lampctl.ts", "src/cli/demo.ts"],
      thresholds: { lines: 80, functions: 80, branches: 70, statements: 80 },
    },
  },
});

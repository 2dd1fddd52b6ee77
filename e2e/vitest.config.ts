import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.e2e.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // qemu under software emulation uses a whole core; two boots at once is what 2 cores take.
    fileParallelism: true,
    maxWorkers: 2,
  },
});

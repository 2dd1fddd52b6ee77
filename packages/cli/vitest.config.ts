import { defineConfig } from "vitest/config";

// Builds run real compressors and servers: on a loaded machine (CI shares 2 cores) a test can
// take several seconds. Nothing here asserts on time.
export default defineConfig({ test: { testTimeout: 30_000, hookTimeout: 30_000 } });

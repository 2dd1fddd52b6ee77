import { defineConfig } from "vitest/config";

// Tests here run whole builds; on the shared 2-core machine a build can take several seconds.
export default defineConfig({ test: { testTimeout: 30_000 } });

import { defineConfig } from "vitest/config";

// Real container builds (buildah, vfs storage) on a shared 2-core machine.
export default defineConfig({ test: { testTimeout: 120_000, hookTimeout: 120_000 } });

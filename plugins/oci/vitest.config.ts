import { defineConfig } from "vitest/config";

// The integration tests start Debian's distribution registry and run skopeo: give them time.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 120_000 } });

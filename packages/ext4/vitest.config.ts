import { defineConfig } from "vitest/config";

// Every test writes real images and runs e2fsck/debugfs on them: allow for a loaded machine.
export default defineConfig({ test: { testTimeout: 30_000 } });

import { defineConfig } from "vitest/config";

// Every test builds a real disk image and reads it back with e2fsprogs: allow for a loaded machine.
export default defineConfig({ test: { testTimeout: 30_000 } });

import { defineConfig } from "vitest/config";

// Tests here run whole builds; on the shared 2-core machine (and CI) a build can take several
// seconds under load, so vitest's 5 s default fails them for the wrong reason.
export default defineConfig({
  test: { testTimeout: 30_000 },
});

import type { FledgeConfig, ManifestConfig } from "@fledge/config";

/** A minimal normalised config for tests of the bus (no files are read). */
export function testConfig(overrides: Partial<FledgeConfig> = {}): FledgeConfig {
  return {
    file: "/nonexistent/fledge.toml",
    rootDir: "/nonexistent",
    version: "1",
    strategy: "initramfs",
    init: { mode: "none" },
    busybox: { include: false, url: "file:///nonexistent" },
    source: { buildArgs: {} },
    mappings: [],
    overlays: [],
    output: { compression: "gzip", arch: "x86_64" },
    fetch: { mirrors: [] },
    plugins: [],
    run: {},
    ...overrides,
  };
}

export function testManifest(): ManifestConfig {
  return { data: { name: "t", version: "0.1.0", workload: { entrypoint: "/init", base_url: "http://127.0.0.1:8000" } }, notes: [] };
}

/** Tap names of the built-in plugins; a failure in one of them is reported without the plugin prefix. */
export const PLUGIN = {
  initramfs: "fledge:initramfs",
  compression: "fledge:compression",
  skeleton: "fledge:skeleton",
  overlay: "fledge:overlay",
  busybox: "fledge:busybox",
  init: "fledge:init",
  agent: "fledge:agent",
  mappings: "fledge:mappings",
  archive: "fledge:archive",
  deriveManifest: "fledge:derive-manifest",
} as const;

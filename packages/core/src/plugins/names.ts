/** Tap names of the built-in plugins; a failure in one of them is reported without the plugin prefix. */
export const PLUGIN = {
  initramfs: "fledge:initramfs",
  compression: "fledge:compression",
  skeleton: "fledge:skeleton",
  busybox: "fledge:busybox",
  init: "fledge:init",
  agent: "fledge:agent",
  mappings: "fledge:mappings",
  archive: "fledge:archive",
  lock: "fledge:lock",
} as const;

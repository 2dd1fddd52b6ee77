/**
 * First-party plugins that provide strategies and overlay kinds fledge.toml can name (the Go
 * fledge's keys among them). When a config asks for one of these and no plugin listed
 * provides it, fledge loads the package by itself if it is installed, and otherwise says which
 * package to install.
 */
export const FIRST_PARTY: { readonly strategies: Readonly<Record<string, string>>; readonly sources: Readonly<Record<string, string>>; readonly tables: Readonly<Record<string, string>> } = {
  strategies: {
    oci_rootfs: "@fledge/plugin-rootfs",
  },
  sources: {
    image: "@fledge/plugin-oci",
    dockerfile: "@fledge/plugin-rootfs",
    tarball: "@fledge/plugin-tarball",
  },
  /** Tables of fledge.toml whose presence turns a plugin on (it reads the table from ctx.config). */
  tables: {
    check: "@fledge/plugin-bootcheck",
  },
};

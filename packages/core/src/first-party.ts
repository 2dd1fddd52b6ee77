/**
 * First-party plugins that provide strategies and overlay kinds fledge.toml can name (the Go
 * fledge's keys among them). When a config asks for one of these and no plugin listed
 * provides it, fledge loads the package by itself if it is installed, and otherwise says which
 * package to install. `requires` lists the kinds a kind's plugin hands its work on to (a
 * Dockerfile source builds an image, then overlays it as an `image` source).
 */
export const FIRST_PARTY: {
  readonly strategies: Readonly<Record<string, string>>;
  readonly sources: Readonly<Record<string, string>>;
  readonly requires: Readonly<Record<string, readonly string[]>>;
  readonly tables: Readonly<Record<string, string>>;
} = {
  strategies: {
    oci_rootfs: "@fledge/plugin-rootfs",
  },
  sources: {
    image: "@fledge/plugin-oci",
    dockerfile: "@fledge/plugin-dockerfile",
    tarball: "@fledge/plugin-tarball",
  },
  requires: {
    dockerfile: ["image"],
  },
  /** Tables of fledge.toml whose presence turns a plugin on (it reads the table from ctx.config). */
  tables: {
    check: "@fledge/plugin-bootcheck",
  },
};

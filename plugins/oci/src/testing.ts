/**
 * Test helpers (`@fledge/plugin-oci/testing`), not part of the runtime API: Debian's
 * distribution registry on a free loopback port (optionally behind token auth, with a token
 * server of our own), skopeo, and OCI image layouts written from tar members.
 */
export { startRegistry, startTokenServer, skopeo, freePort, requireTools, type TestRegistry, type TokenServer, type TokenAuth } from "./test/registry.js";
export { writeLayout, type TestPlatformImage, type WrittenImage } from "./test/layout.js";
export { makeTar, type TestMember } from "./test/tar.js";

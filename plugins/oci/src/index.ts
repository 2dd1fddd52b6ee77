/**
 * @fledge/plugin-oci — container images as fledge rootfs sources.
 *
 * The default export is the plugin (applied by itself when fledge.toml has `[source] image` or
 * `[[overlay]] kind = "image"`). The rest is the reusable part, for other strategies and
 * plugins (an ext4 rootfs, Dockerfile builds that hand over an OCI layout or a docker-archive):
 * `loadImage` resolves any reference to verified, cached, flattened layers, and
 * `overlayNodes` turns them into tree nodes.
 */
export { default, default as OciPlugin, PLUGIN_NAME, parseSize, type OciPluginOptions } from "./plugin.js";
export { loadImage, openSource, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_UNPACKED, type LoadImageOptions, type LoadedImage } from "./load.js";
export { overlayNodes, rangeReader, toReopenable, type OverlayNode, type OverlayOptions } from "./overlay.js";
export { imageDefaults, type ImageDefaults } from "./defaults.js";
export { ImageFs, type FsNode, type Inode, type FileData, type FlattenReport } from "./flatten.js";
export {
  parseReference,
  parseRegistryReference,
  formatReference,
  describeReference,
  registryBaseUrl,
  isLoopbackHost,
  type ImageReference,
  type RegistryReference,
  type LayoutReference,
  type ArchiveReference,
} from "./reference.js";
export { platformForArch, formatPlatform, choosePlatform, parseManifest, parseConfig, MEDIA, type Platform, type ImageConfig, type ImageManifest, type ImageIndex, type Descriptor } from "./image.js";
export type { ImageSource, ResolvedImage, Pin } from "./source.js";
export type { LayerSpec, OpenLayer } from "./layers.js";
export { findCredentials, authFiles, parseChallenges, type Credential } from "./auth.js";
export { OciError, isOciError } from "./errors.js";

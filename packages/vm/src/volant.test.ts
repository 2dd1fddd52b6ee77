import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { decodeManifest, encodeManifest, marshalManifest, normalizeManifest, sanitizeHostname, volantCmdline } from "./volant.js";

const manifest = {
  $schema: "https://example.invalid/schema.json",
  schema_version: "1.0",
  name: "hello",
  version: "0.1.0",
  runtime: "hello",
  enabled: true,
  resources: { cpu_cores: 1, memory_mb: 128 },
  workload: { type: "http", base_url: "http://127.0.0.1:8000", entrypoint: ["/bin/httpd", "-f", "-p", "8000"], env: { Z: "last", A: "<first & only>" } },
  health_check: { endpoint: "/", timeout_ms: 5000 },
  initramfs: { url: "/srv/plugin.cpio.gz", checksum: "sha256:abc" },
  unknown_field: "dropped as Go's decoder drops it",
};

describe("the manifest as Volant encodes it", () => {
  it("marshals in pluginspec.Manifest's field order, with Go's omitempty and escaping", () => {
    const json = marshalManifest(normalizeManifest(manifest));
    // Go's json.Marshal of the normalised struct: every non-omitempty field, struct order
    expect(json).toBe(
      '{"schema_version":"1.0","name":"hello","version":"0.1.0","runtime":"hello",' +
        '"rootfs":{"url":"","format":"raw"},"initramfs":{"url":"/srv/plugin.cpio.gz","checksum":"sha256:abc"},' +
        '"resources":{"cpu_cores":1,"memory_mb":128},"health_check":{"endpoint":"/","timeout_ms":5000},' +
        '"workload":{"type":"http","base_url":"http://127.0.0.1:8000","entrypoint":["/bin/httpd","-f","-p","8000"],' +
        '"env":{"A":"\\u003cfirst \\u0026 only\\u003e","Z":"last"}},"enabled":true,' +
        '"labels":{"volant.plugin":"hello","volant.runtime":"hello"}}',
    );
    expect(JSON.parse(json).unknown_field).toBeUndefined();
  });

  it("normalises as Volant does: runtime defaults to the name, values trimmed, labels added", () => {
    const n = normalizeManifest({ name: " x ", version: "1", resources: {}, workload: { entrypoint: [" a ", " "] }, labels: { team: " t " } });
    expect(n.runtime).toBe("x");
    expect(n.workload.entrypoint).toEqual(["a"]);
    expect(n.labels).toEqual({ team: "t", "volant.plugin": "x", "volant.runtime": "x" });
    expect(n.rootfs.format).toBe("raw");
  });

  it("encodes as gzip then base64url without padding, and decodes back", () => {
    const enc = encodeManifest(manifest);
    expect(enc).toMatch(/^[A-Za-z0-9_-]+$/);
    const gz = Buffer.from(enc, "base64url");
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
    expect(gz.readUInt32LE(4)).toBe(0); // no mtime
    expect(gz[3]).toBe(0); // no name, comment or extra field
    expect(gunzipSync(gz).toString()).toBe(marshalManifest(normalizeManifest(manifest)));
    expect(decodeManifest(enc).name).toBe("hello");
  });
});

describe("Volant's kernel command line", () => {
  it("has Volant's base line, ip= for qemu's user network, and the volant.* arguments sorted", () => {
    const line = volantCmdline({ manifest });
    expect(line.startsWith("console=ttyS0 reboot=k panic=1 quiet loglevel=1 i8042.noaux i8042.nokbd pci=lastbus=0 ip=10.0.2.15::10.0.2.2:255.255.255.0:hello:eth0:off ")).toBe(true);
    const volant = line.split(" ").filter((a) => a.startsWith("volant."));
    expect(volant.map((a) => a.split("=")[0])).toEqual(["volant.manifest", "volant.plugin", "volant.runtime"]);
    expect(decodeManifest(volant[0]!.slice("volant.manifest=".length)).workload.base_url).toBe("http://127.0.0.1:8000");
    expect(line).not.toContain("volant.rootfs_device");
  });

  it("adds the rootfs keys for a disk image and the console of aarch64", () => {
    const line = volantCmdline({ manifest: { ...manifest, rootfs: { url: "/srv/rootfs.img" } }, console: "ttyAMA0", extra: "rdinit=/x" });
    expect(line).toContain("console=ttyAMA0 ");
    expect(line).toContain(" volant.rootfs_device=vda volant.rootfs_fstype=ext4");
    expect(line).toContain(":eth0:off rdinit=/x volant.");
  });

  it("leaves the address out in dhcp mode, as Volant does, and sanitises the hostname", () => {
    expect(volantCmdline({ manifest: { ...manifest, network: { mode: "DHCP" } } })).toContain(" ip=::10.0.2.2:255.255.255.0:hello:eth0:off");
    expect(sanitizeHostname("My_Plugin.v2")).toBe("mypluginv2");
    expect(sanitizeHostname("___")).toBe("vm");
  });
});

import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Fetcher } from "@fledge/fetch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseAccel, findQemu } from "./qemu.js";
import { hostKernels, inspectKernel, moduleDepends, resolveModules } from "./kernel.js";
import { selectKernel } from "./select.js";

const work = mkdtempSync(join(tmpdir(), "fledge-vm-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A file with an x86 setup header naming `release`, as a bzImage has. */
function fakeBzImage(path: string, release: string): Buffer {
  const b = Buffer.alloc(0x1000);
  b.write("HdrS", 0x202, "latin1");
  b.writeUInt16LE(0x400, 0x20e);
  b.write(`${release} (builder@host) #1 SMP`, 0x600, "latin1");
  writeFileSync(path, b);
  return b;
}

function fakeArm64Image(path: string, release: string): void {
  const b = Buffer.alloc(0x2000);
  b.write("ARM\x64", 0x38, "latin1");
  b.write(`Linux version ${release} (gcc) #1 SMP`, 0x1000, "latin1");
  writeFileSync(path, b);
}

describe("kernels", () => {
  it("reads the architecture and release of a bzImage and an arm64 Image, and finds their config and modules", async () => {
    const boot = join(work, "root", "boot");
    mkdirSync(join(work, "root", "lib", "modules", "6.1.0-9-arm64", "kernel"), { recursive: true });
    mkdirSync(boot, { recursive: true });
    fakeBzImage(join(boot, "vmlinuz-6.1.0-9-amd64"), "6.1.0-9-amd64");
    fakeArm64Image(join(boot, "vmlinuz-6.1.0-9-arm64"), "6.1.0-9-arm64");
    writeFileSync(join(boot, "config-6.1.0-9-arm64"), "CONFIG_VIRTIO_NET=m\n");
    const x86 = await inspectKernel(join(boot, "vmlinuz-6.1.0-9-amd64"));
    expect(x86).toMatchObject({ arch: "x86_64", release: "6.1.0-9-amd64" });
    const arm = await inspectKernel(join(boot, "vmlinuz-6.1.0-9-arm64"));
    expect(arm).toMatchObject({ arch: "aarch64", release: "6.1.0-9-arm64", configPath: join(boot, "config-6.1.0-9-arm64"), modulesDir: join(work, "root", "lib", "modules", "6.1.0-9-arm64") });
    // only the kernels of the asked architecture
    expect((await hostKernels("aarch64", boot)).map((k) => k.release)).toEqual(["6.1.0-9-arm64"]);
    expect((await hostKernels("x86_64", boot)).map((k) => k.release)).toEqual(["6.1.0-9-amd64"]);
  });

  it("refuses what is not a kernel, naming the file", async () => {
    const p = join(work, "initrd.img");
    writeFileSync(p, Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]));
    await expect(inspectKernel(p)).rejects.toThrow(`${p} is not a kernel fledge can boot`);
    await expect(inspectKernel(join(work, "nope"))).rejects.toThrow("does not exist");
  });

  it("resolves the NIC's modules and their dependencies from the modules' own depends=, dependencies first", () => {
    const dir = join(work, "modules");
    const ko = (sub: string, name: string, deps: string) => {
      mkdirSync(join(dir, "kernel", sub), { recursive: true });
      writeFileSync(join(dir, "kernel", sub, `${name}.ko`), Buffer.from(`\x7fELF...\0license=GPL\0depends=${deps}\0vermagic=6.1\0`, "latin1"));
    };
    ko("drivers/virtio", "virtio", "");
    ko("drivers/virtio", "virtio_ring", "");
    ko("drivers/virtio", "virtio_pci", "virtio,virtio_ring");
    ko("net/core", "failover", "");
    ko("drivers/net", "net_failover", "failover");
    ko("drivers/net", "virtio_net", "net_failover,failover,virtio,virtio_ring");
    const { modules, missing } = resolveModules(dir, ["virtio_pci", "virtio_net", "e1000"]);
    expect(modules.map((m) => m.name)).toEqual(["virtio", "virtio_ring", "virtio_pci", "failover", "net_failover", "virtio_net"]);
    expect(missing).toEqual(["e1000"]);
    expect(moduleDepends(Buffer.from("\0depends=\0"))).toEqual([]);
  });
});

describe("choosing the kernel", () => {
  let server: Server;
  let base = "";
  let served: Buffer;
  let published = "";
  beforeAll(async () => {
    served = fakeBzImage(join(work, "bz"), "6.6.0-volant");
    published = createHash("sha256").update(served).digest("hex");
    server = createServer((req, res) => {
      const send = (body: string | Buffer) => res.writeHead(200).end(body);
      if (req.url === "/api/repos/volantvm/volant/releases/tags/v9.9.9")
        return send(JSON.stringify({ tag_name: "v9.9.9", assets: ["kestrel", "bzImage", "bzImage.sha256"].map((name) => ({ name, browser_download_url: `${base}/dl/${name}` })) }));
      if (req.url === "/dl/bzImage") return send(served);
      if (req.url === "/dl/bzImage.sha256") return send(`${published}  bzImage\n`);
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  const fetcher = (offline = false) => new Fetcher({ cacheDir: join(work, "cache"), offline, env: { FLEDGE_GITHUB_API: `${base}/api` }, http: { retries: 0 } });
  const emptyBoot = join(work, "empty-boot");
  mkdirSync(emptyBoot, { recursive: true });

  it("takes Volant's release bzImage, verified against its bzImage.sha256, and pins it", async () => {
    const c = await selectKernel({ arch: "x86_64", fetcher: fetcher(), volantVersion: "v9.9.9", bootDir: emptyBoot });
    expect(c).toMatchObject({ source: "volant", volant: true, pin: { version: "v9.9.9", tag: "v9.9.9", sha256: published } });
    expect(c.kernel.release).toBe("6.6.0-volant");
    // pinned: offline, from the cache, no API call
    const again = await selectKernel({ arch: "x86_64", fetcher: fetcher(true), volantVersion: "v9.9.9", pin: c.pin, bootDir: emptyBoot });
    expect(again.source).toBe("volant");
  });

  it("says plainly when only the host's kernel is there, and that it is not Volant's", async () => {
    const boot = join(work, "hostboot");
    mkdirSync(boot, { recursive: true });
    fakeBzImage(join(boot, "vmlinuz-6.1.0-1-amd64"), "6.1.0-1-amd64");
    published = "0".repeat(64); // the release's checksum no longer matches its bzImage
    const c = await selectKernel({ arch: "x86_64", fetcher: fetcher(), volantVersion: "v9.9.9", bootDir: boot });
    published = createHash("sha256").update(served).digest("hex");
    expect(c.source).toBe("host");
    expect(c.volant).toBe(false);
    expect(c.notice).toMatch(/Volant's kernel \(release v9\.9\.9\) is not available: .*sha256/);
    expect(c.notice).toContain("NOT Volant's kernel");
    await expect(selectKernel({ arch: "aarch64", fetcher: fetcher(), bootDir: emptyBoot })).rejects.toThrow(/Volant publishes no aarch64 kernel, and .* has no aarch64 vmlinuz/);
  });

  it("--kernel wins, and must match the artifact's architecture", async () => {
    fakeArm64Image(join(work, "Image"), "6.1.0-arm64");
    await expect(selectKernel({ arch: "x86_64", flag: join(work, "Image") })).rejects.toThrow("is an aarch64 kernel, the artifact is x86_64");
    expect((await selectKernel({ arch: "aarch64", flag: join(work, "Image") })).source).toBe("flag");
  });
});

describe("qemu and the accelerator", () => {
  it("names the package of each system when qemu is missing", () => {
    expect(() => findQemu("x86_64", { FLEDGE_QEMU: join(work, "no-qemu") })).toThrow(
      expect.objectContaining({ code: "FLEDGE_NO_QEMU", hint: expect.stringMatching(/apt-get install qemu-system-x86.*dnf install qemu-system-x86.*brew install qemu/) }),
    );
    expect(() => findQemu("aarch64", { FLEDGE_QEMU_AARCH64: join(work, "no-qemu") })).toThrow(expect.objectContaining({ hint: expect.stringContaining("qemu-system-arm") }));
  });

  it("uses KVM only when the probe finds it usable, TCG otherwise or when forced", () => {
    const host = process.arch === "x64" ? "x86_64" : "aarch64";
    expect(chooseAccel(host, {}, () => undefined).accel).toBe("kvm");
    expect(chooseAccel(host, {}, () => "/dev/kvm is missing")).toEqual({ accel: "tcg", reason: "TCG (software emulation): /dev/kvm is missing" });
    expect(chooseAccel(host, { FLEDGE_ACCEL: "tcg" }, () => undefined).accel).toBe("tcg");
    expect(chooseAccel(host === "x86_64" ? "aarch64" : "x86_64", {}, () => undefined).accel).toBe("tcg");
    expect(() => chooseAccel(host, { FLEDGE_ACCEL: "hvf" })).toThrow('FLEDGE_ACCEL=hvf is not "kvm" or "tcg"');
  });
});

/**
 * The first-party plugins of issue 10 as a user meets them, through the built `fledge`:
 * `[[overlay]] kind = "tarball"` from a URL on a loopback server (loaded by itself, cached,
 * locked, rebuilt --offline once the server is gone) and `plugins = ["@fledge/plugin-sbom"]`
 * (an SPDX 2.3 SBOM beside the artifact); the image boots and has the tarball's files.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs } from "./qemu.js";

const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "fledge-e2e-plugins-"));
let server: Server | undefined;
let url: string;
let tarball: Buffer;
const hits: string[] = [];

beforeAll(async () => {
  // a tarball as users make them: GNU tar, gzip, numeric owners, a hard link and a symlink
  const src = join(out, "tree");
  mkdirSync(join(src, "srv/bin"), { recursive: true });
  writeFileSync(join(src, "srv/hello.txt"), "hello from a tarball\n");
  writeFileSync(join(src, "srv/bin/greet"), '#!/bin/sh\necho "FLEDGE-E2E greet=$(cat /srv/hello.txt)"\n');
  chmodSync(join(src, "srv/bin/greet"), 0o755);
  linkSync(join(src, "srv/bin/greet"), join(src, "srv/bin/greet-again"));
  symlinkSync("bin/greet", join(src, "srv/greet"));
  execFileSync("tar", ["--owner=0", "--group=0", "--numeric-owner", "-czf", join(out, "rootfs.tar.gz"), "-C", src, "srv"]);
  tarball = readFileSync(join(out, "rootfs.tar.gz"));
  server = createServer((req, res) => {
    hits.push(req.url ?? "");
    if (req.url === "/dl/rootfs.tar.gz") res.end(tarball);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dl/rootfs.tar.gz`;
});
afterAll(async () => {
  if (server) await new Promise((r) => server!.close(r));
  rmSync(out, { recursive: true, force: true });
});

interface Spdx {
  spdxVersion: string;
  documentNamespace: string;
  files: { fileName: string; checksums: { algorithm: string; checksumValue: string }[]; comment: string }[];
  packages: { SPDXID: string; name: string; downloadLocation: string; checksums?: { algorithm: string; checksumValue: string }[] }[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}

describe("first-party plugins through the fledge CLI", () => {
  it('[[overlay]] kind = "tarball" from a loopback URL and plugins = ["@fledge/plugin-sbom"]: in the image, in fledge.lock, in the SBOM; rebuilt --offline after the server is gone; boots', async () => {
    const dir = join(out, "project");
    cpSync(join(fixtures, "none"), dir, { recursive: true });
    writeFileSync(join(dir, "init.sh"), '#!/bin/sh\nmount -t proc proc /proc\n/srv/greet\n/srv/bin/greet-again >/dev/null && echo "FLEDGE-E2E link=ok"\npoweroff -f\n', { mode: 0o755 });
    const toml = readFileSync(join(dir, "fledge.toml"), "utf8").replace('strategy = "initramfs"\n', 'strategy = "initramfs"\nplugins = ["@fledge/plugin-sbom"]\n');
    writeFileSync(join(dir, "fledge.toml"), `${toml}\n[[overlay]]\nkind = "tarball"\nurl = "${url}"\n`);
    const env = { FLEDGE_CACHE_DIR: join(out, "cache") };

    const first = await fledge(["build", "-v", "-o", join(out, "a", "plugin.cpio.gz")], { cwd: dir, env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain("overlay[0] uses @fledge/plugin-tarball (loaded by itself)");
    expect(hits).toEqual(["/dl/rootfs.tar.gz"]);

    // in fledge.lock, with the digest of the bytes served
    const sha = createHash("sha256").update(tarball).digest("hex");
    const lock = readFileSync(join(dir, "fledge.lock"), "utf8");
    expect(lock).toContain(`["tarball:${url}"]\nsource = "url"\nurl = "${url}"\nsha256 = "${sha}"`);

    // in the image, as fledge inspect lists it
    const listing = JSON.parse((await fledge(["--json", "inspect", join(out, "a", "plugin.cpio.gz")], { cwd: dir })).stdout) as {
      entries: { path: string; type: string; mode: number; linkTo?: string; target?: string }[];
    };
    const byPath = new Map(listing.entries.map((e) => [e.path, e]));
    expect(byPath.get("srv/hello.txt")).toMatchObject({ type: "file" });
    expect(byPath.get("srv/greet")).toMatchObject({ type: "symlink", target: "bin/greet" });
    expect(byPath.get("srv/bin/greet-again")?.linkTo ?? byPath.get("srv/bin/greet")?.linkTo).toMatch(/^srv\/bin\/greet(-again)?$/);

    // the SBOM beside the artifact: every file with its sha256, the tarball as an input with URL and digest
    const spdx = JSON.parse(readFileSync(join(out, "a", "plugin.cpio.gz.spdx.json"), "utf8")) as Spdx;
    expect(spdx.spdxVersion).toBe("SPDX-2.3");
    const hello = spdx.files.find((f) => f.fileName === "./srv/hello.txt")!;
    expect(hello.checksums).toContainEqual({ algorithm: "SHA256", checksumValue: createHash("sha256").update("hello from a tarball\n").digest("hex") });
    expect(hello.comment).toContain(`origin: tarball:${url}`);
    const input = spdx.packages.find((p) => p.name === `tarball:${url}`)!;
    expect(input).toMatchObject({ downloadLocation: url, checksums: [{ algorithm: "SHA256", checksumValue: sha }] });
    expect(spdx.packages.find((p) => p.name === "busybox")).toBeDefined();
    expect(spdx.files.map((f) => f.fileName)).toEqual(expect.arrayContaining(["./init", "./bin/busybox", "./srv/bin/greet", "./srv/bin/greet-again"]));
    expect(spdx.relationships).toContainEqual({ spdxElementId: expect.stringMatching(/^SPDXRef-File-/), relationshipType: "GENERATED_FROM", relatedSpdxElement: (input as { SPDXID: string }).SPDXID });

    // the server goes away; --offline --locked rebuilds the same bytes from the cache
    await new Promise((r) => server!.close(r));
    server = undefined;
    const again = await fledge(["build", "--offline", "--locked", "-o", join(out, "b", "plugin.cpio.gz")], { cwd: dir, env });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(out, "b", "plugin.cpio.gz")).equals(readFileSync(join(out, "a", "plugin.cpio.gz")))).toBe(true);
    expect(readFileSync(join(out, "b", "plugin.cpio.gz.spdx.json")).equals(readFileSync(join(out, "a", "plugin.cpio.gz.spdx.json")))).toBe(true);
    expect(readFileSync(join(dir, "fledge.lock"), "utf8")).toBe(lock);

    // and without the cache it says what is missing, writing nothing
    const cold = await fledge(["build", "--offline", "-o", join(out, "c", "plugin.cpio.gz")], { cwd: dir, env: { FLEDGE_CACHE_DIR: join(out, "empty-cache") } });
    expect(cold.code).not.toBe(0);
    expect(cold.stderr).toContain(url);
    expect(existsSync(join(out, "c", "plugin.cpio.gz")) || existsSync(join(out, "c", "plugin.cpio.gz.spdx.json"))).toBe(false);

    const boot = await bootInitramfs(join(out, "b", "plugin.cpio.gz"));
    expect(boot.serial).toContain("FLEDGE-E2E greet=hello from a tarball");
    expect(boot.serial).toContain("FLEDGE-E2E link=ok");
    expect(boot.panicked).toBe(false);
  });
});

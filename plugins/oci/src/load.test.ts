import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContentCache, Fetcher } from "@fledge/fetch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FsNode } from "./flatten.js";
import { TOUCH_AFTER_MS } from "./layers.js";
import { loadImage, type LoadedImage } from "./load.js";
import { writeLayout, type TestPlatformImage } from "./test/layout.js";
import { skopeo, startRegistry, startTokenServer, type TestRegistry, type TokenServer } from "./test/registry.js";

const work = mkdtempSync(join(tmpdir(), "fledge-oci-load-"));
const amd64 = { os: "linux", architecture: "amd64" };
const arm64 = { os: "linux", architecture: "arm64" };
let registry: TestRegistry;

/** Three layers: a base, one with whiteouts and an opaque directory, one uncompressed. */
const APP: TestPlatformImage = {
  layers: [
    [
      { name: "bin/", type: "directory" },
      { name: "bin/busybox", data: "BUSYBOX", mode: 0o755 },
      { name: "bin/sh", type: "link", linkname: "bin/busybox" },
      { name: "bin/ls", type: "symlink", linkname: "busybox" },
      { name: "usr/bin/", type: "directory" },
      { name: "usr/bin/su", data: "SU", mode: 0o4755, uid: 0, gid: 0 },
      { name: "etc/", type: "directory" },
      { name: "etc/old.conf", data: "old" },
      { name: "etc/keep.conf", data: "keep" },
      { name: "var/cache/", type: "directory" },
      { name: "var/cache/a", data: "a" },
      { name: "var/cache/b/", type: "directory" },
      { name: "var/cache/b/c", data: "c" },
      { name: "dev/", type: "directory" },
      { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
      { name: "home/app/", type: "directory", uid: 1000, gid: 1000, mode: 0o700 },
    ],
    [
      { name: "etc/.wh.old.conf", data: "" },
      { name: "var/cache/", type: "directory" },
      { name: "var/cache/.wh..wh..opq", data: "" },
      { name: "var/cache/new", data: "new" },
      { name: "etc/app.conf", data: "app=1\n" },
    ],
    [
      { name: "app/", type: "directory" },
      { name: "app/run", data: "#!/bin/sh\necho hi\n", mode: 0o755 },
    ],
  ],
  compression: ["gzip", "gzip", "none"],
  config: { Entrypoint: ["/app/run"], Cmd: ["--port", "8000"], Env: ["PATH=/usr/bin:/bin", "APP=1"], WorkingDir: "/app", ExposedPorts: { "8000/tcp": {} } },
};

/** The flattened image as path → description, files by content hash. */
function snapshot(img: LoadedImage): Record<string, string> {
  const out: Record<string, string> = {};
  const groups = img.fs.linkGroups();
  for (const [p, n] of img.fs.walk()) out[p] = describe_(n, img, groups);
  return out;
}
function describe_(n: FsNode, img: LoadedImage, groups: Map<unknown, number>): string {
  switch (n.type) {
    case "file": {
      const { layer, offset, size } = n.inode.data;
      const bytes = readFileSync(img.layers[layer]!.readPath).subarray(offset, offset + size);
      const link = groups.get(n.inode);
      return `file ${n.inode.mode.toString(8)} ${n.inode.uid}:${n.inode.gid} ${bytes.toString()}${link !== undefined ? ` link${link}` : ""}`;
    }
    case "dir":
      return `dir ${n.mode.toString(8)} ${n.uid}:${n.gid}`;
    case "symlink":
      return `-> ${n.target}`;
    case "char":
    case "block":
      return `${n.type} ${n.major},${n.minor} ${n.mode.toString(8)}`;
    case "fifo":
      return `fifo ${n.mode.toString(8)}`;
  }
}

const fetcher = (cacheDir: string, extra: Partial<ConstructorParameters<typeof Fetcher>[0]> = {}) =>
  new Fetcher({ cacheDir, env: { ...process.env, HOME: join(work, "nohome"), FLEDGE_MIRRORS: "" }, http: { retries: 1, retryBaseMs: 10 }, ...extra });

async function load(ref: string, cacheDir: string, extra: Partial<Parameters<typeof loadImage>[0]> = {}, f = fetcher(cacheDir)) {
  try {
    return await loadImage({ reference: ref, baseDir: work, platform: amd64, fetcher: f, ...extra });
  } finally {
    await f.close();
  }
}

/** Temp files left in a cache (must be none after any build, failed or not). */
const temps = (cacheDir: string) => (existsSync(join(cacheDir, "tmp")) ? readdirSync(join(cacheDir, "tmp")) : []);

const layout = join(work, "layout");
const expected: Record<string, string> = {
  "/app": "dir 755 0:0",
  "/bin": "dir 755 0:0",
  "/dev": "dir 755 0:0",
  "/etc": "dir 755 0:0",
  "/home": "dir 755 0:0",
  "/usr": "dir 755 0:0",
  "/var": "dir 755 0:0",
  "/app/run": "file 755 0:0 #!/bin/sh\necho hi\n",
  "/bin/busybox": "file 755 0:0 BUSYBOX link0",
  "/bin/ls": "-> busybox",
  "/bin/sh": "file 755 0:0 BUSYBOX link0",
  "/dev/null": "char 1,3 666",
  "/etc/app.conf": "file 644 0:0 app=1\n",
  "/etc/keep.conf": "file 644 0:0 keep",
  "/home/app": "dir 700 1000:1000",
  "/usr/bin": "dir 755 0:0",
  "/var/cache": "dir 755 0:0",
  "/usr/bin/su": "file 4755 0:0 SU",
  "/var/cache/new": "file 644 0:0 new",
};

beforeAll(async () => {
  registry = await startRegistry();
  await writeLayout(layout, "1", [APP]);
  await writeLayout(layout, "multi", [
    { ...APP, layers: [[{ name: "arch", data: "amd64" }]], architecture: "amd64", compression: ["gzip"] },
    { ...APP, layers: [[{ name: "arch", data: "arm64" }]], architecture: "arm64", compression: ["gzip"] },
  ]);
  await writeLayout(layout, "exotic", [
    { ...APP, layers: [[{ name: "arch", data: "s390x" }]], architecture: "s390x", compression: ["gzip"] },
    { ...APP, layers: [[{ name: "arch", data: "ppc64le" }]], architecture: "ppc64le", compression: ["gzip"] },
  ]);
  await writeLayout(layout, "zstd", [{ ...APP, compression: ["zstd", "gzip", "zstd"] }]);
  await writeLayout(layout, "escape", [
    {
      layers: [
        [
          { name: "ok", data: "ok" },
          { name: "../escape", data: "gotcha" },
        ],
      ],
    },
  ]);
  await skopeo([`oci:${layout}:1`, `docker://${registry.host}/app:1`, "--dest-tls-verify=false"]);
  await skopeo([`oci:${layout}:multi`, `docker://${registry.host}/multi:1`, "--dest-tls-verify=false", "--all"]);
  await skopeo([`oci:${layout}:exotic`, `docker://${registry.host}/exotic:1`, "--dest-tls-verify=false", "--all"]);
  await skopeo([`oci:${layout}:escape`, `docker://${registry.host}/escape:1`, "--dest-tls-verify=false"]);
  await skopeo([`oci:${layout}:zstd`, `docker://${registry.host}/zstd:1`, "--dest-tls-verify=false"]);
  await skopeo([`oci:${layout}:1`, `docker-archive:${join(work, "app.tar")}:app:1`]);
}, 120_000);
afterAll(async () => {
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("loadImage from a registry, an OCI layout and a docker-archive", () => {
  it("applies the layers with whiteouts, opaque directories, hardlinks, devices, owners and setuid", async () => {
    const img = await load(`${registry.host}/app:1`, join(work, "c-reg"));
    try {
      expect(snapshot(img)).toEqual(expected);
      // skopeo compresses the uncompressed third layer on push: the layout test below reads it as it is
      expect(img.image.layers.every((l) => l.mediaType === "application/vnd.oci.image.layer.v1.tar+gzip")).toBe(true);
      expect(img.image.reference).toBe(`${registry.host}/app:1`);
      expect(img.image.config.config.Entrypoint).toEqual(["/app/run"]);
      expect(img.cachedLayers).toBe(0);
    } finally {
      await img.close();
    }
  });

  it("gives the same files from the OCI layout, the docker-archive, Docker media types and zstd layers", async () => {
    await skopeo([`oci:${layout}:1`, `docker://${registry.host}/app-docker:1`, "--dest-tls-verify=false", "--format", "v2s2"]);
    for (const ref of [`${registry.host}/zstd:1`, `oci:${layout}:zstd`, `oci:${layout}:1`, `docker-archive:${join(work, "app.tar")}`, `docker-archive:${join(work, "app.tar")}:app:1`, `${registry.host}/app-docker:1`]) {
      const img = await load(ref, join(work, `c-${createHash("sha256").update(ref).digest("hex").slice(0, 8)}`));
      try {
        expect(snapshot(img), ref).toEqual(expected);
      } finally {
        await img.close();
      }
    }
    const docker = await load(`${registry.host}/app-docker:1`, join(work, "c-docker2"));
    expect(docker.image.manifest?.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
    await docker.close();
  });

  it("a rebuild takes every layer from the cache (verified) without decompressing; a tampered entry is a miss", async () => {
    const cache = join(work, "c-warm");
    const cold = await load(`${registry.host}/app:1`, cache);
    await cold.close();
    // fledge cache ls names every entry: the registry URL of blobs and documents, oci-layer:… for unpacked layers
    const listed = await new ContentCache(cache).list();
    expect(listed.filter((e) => e.urls.length === 0)).toEqual([]);
    expect(listed.filter((e) => e.urls.some((u) => u.startsWith(`oci-layer:${registry.host}/app:1@sha256:`)))).toHaveLength(3);
    const warm = await load(`${registry.host}/app:1`, cache);
    expect(warm.cachedLayers).toBe(3);
    expect(snapshot(warm)).toEqual(expected);
    await warm.close();
    // Tamper with an unpacked layer (same size, different bytes): it is detected and rebuilt from the cached blob.
    const diffID = cold.image.layers[1]!.diffID.slice(7);
    const file = join(cache, "sha256", diffID);
    const bytes = readFileSync(file);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 2000) ^ 0xff, bytes.length - 2000);
    writeFileSync(file, bytes);
    const again = await load(`${registry.host}/app:1`, cache);
    expect(again.cachedLayers).toBe(2);
    expect(snapshot(again)).toEqual(expected);
    await again.close();
    expect(createHash("sha256").update(readFileSync(file)).digest("hex")).toBe(diffID);
    expect(temps(cache)).toEqual([]);
  });

  it("a cache hit leaves a recently used layer tar's mtime and ctime alone (the archive's stat cache stays valid), and refreshes an older one for prune", async () => {
    const cache = join(work, "c-touch");
    await (await load(`oci:${layout}:1`, cache)).close();
    const warm = await load(`oci:${layout}:1`, cache);
    const tar = join(cache, "sha256", warm.image.layers[0]!.diffID.slice(7));
    await warm.close();
    const before = statSync(tar, { bigint: true });
    await (await load(`oci:${layout}:1`, cache)).close();
    const after = statSync(tar, { bigint: true });
    expect([after.mtimeNs, after.ctimeNs]).toEqual([before.mtimeNs, before.ctimeNs]);
    // last used over an hour ago: refreshed, so `fledge cache prune --older-than 1h` keeps it
    const old = new Date(Date.now() - TOUCH_AFTER_MS - 60_000);
    utimesSync(tar, old, old);
    await (await load(`oci:${layout}:1`, cache)).close();
    expect(Date.now() - statSync(tar).mtimeMs).toBeLessThan(60_000);
  });

  it("pinned by digest, --offline needs no registry at all; a tag offline uses what the cache remembers", async () => {
    const cache = join(work, "c-offline");
    const online = await load(`${registry.host}/app:1`, cache);
    await online.close();
    const pin = { digest: online.image.digest };
    const off = await load(`${registry.host}/app:1`, cache, { pin }, fetcher(cache, { offline: true }));
    expect(snapshot(off)).toEqual(expected);
    await off.close();
    const byTag = await load(`${registry.host}/app:1`, cache, {}, fetcher(cache, { offline: true }));
    expect(byTag.image.digest).toBe(online.image.digest);
    await byTag.close();
    await expect(load(`${registry.host}/app:1`, join(work, "c-empty"), { pin }, fetcher(join(work, "c-empty"), { offline: true }))).rejects.toMatchObject({
      code: "FLEDGE_OCI_OFFLINE",
    });
  });

  it("chooses the platform from a multi-platform index, and lists what an index offers when ours is missing", async () => {
    const cache = join(work, "c-multi");
    for (const [platform, want] of [
      [amd64, "amd64"],
      [arm64, "arm64"],
    ] as const) {
      const img = await load(`${registry.host}/multi:1`, cache, { platform });
      expect(img.image.fromIndex).toBe(true);
      expect(img.image.platform.architecture).toBe(want);
      expect(snapshot(img)["/arch"]).toBe(`file 644 0:0 ${want}`);
      await img.close();
    }
    await expect(load(`${registry.host}/exotic:1`, cache)).rejects.toMatchObject({
      name: "OciError",
      code: "FLEDGE_OCI_PLATFORM",
      message: expect.stringMatching(/has no image for linux\/amd64; it offers linux\/s390x, linux\/ppc64le/),
    });
    await expect(load(`oci:${layout}:exotic`, cache)).rejects.toMatchObject({ code: "FLEDGE_OCI_PLATFORM" });
  });
});

describe("loadImage errors: clear, nothing partial, nothing poisoned in the cache", () => {
  it("an unknown repository, an unknown tag (listing the tags), an unknown layout tag", async () => {
    const cache = join(work, "c-errors");
    await expect(load(`${registry.host}/nope:1`, cache)).rejects.toMatchObject({ code: "FLEDGE_OCI_NOT_FOUND", message: `${registry.host} has no repository nope` });
    await expect(load(`${registry.host}/app:2`, cache)).rejects.toMatchObject({ code: "FLEDGE_OCI_NOT_FOUND", message: `${registry.host}/app has no tag "2"; its tags: 1` });
    await expect(load(`oci:${layout}:nope`, cache)).rejects.toMatchObject({ code: "FLEDGE_OCI_NOT_FOUND", message: /has no image tagged "nope"; it has "1", "multi"/ });
    await expect(load(`docker-archive:${join(work, "app.tar")}:other:1`, cache)).rejects.toMatchObject({ code: "FLEDGE_OCI_NOT_FOUND", message: /no image named "other:1"; it has "app:1"/ });
    expect(temps(cache)).toEqual([]);
  });

  it("a layer entry named ../escape fails the build and leaves nothing in the cache but verified content", async () => {
    const cache = join(work, "c-escape");
    await expect(load(`${registry.host}/escape:1`, cache)).rejects.toMatchObject({ code: "FLEDGE_OCI_ESCAPE", message: /"\.\.\/escape"/ });
    expect(temps(cache)).toEqual([]);
  });

  it("a decompression bomb passes the size cap: the error says how to raise it", async () => {
    const cache = join(work, "c-bomb");
    await expect(load(`${registry.host}/app:1`, cache, { maxUnpackedBytes: 4096, raiseHint: 'max_unpacked_size = "…" in [[overlay]]' })).rejects.toMatchObject({
      code: "FLEDGE_OCI_TOO_BIG",
      hint: expect.stringContaining("max_unpacked_size"),
    });
    expect(temps(cache)).toEqual([]);
    // a bomb of tiny members is stopped while the layer streams, not after it was held in memory
    await expect(load(`${registry.host}/app:1`, cache, { maxEntries: 5, raiseHint: 'max_unpacked_size = "16GiB" in [[overlay]]' })).rejects.toMatchObject({
      code: "FLEDGE_OCI_TOO_BIG",
      message: expect.stringMatching(/more than 5 members/),
      hint: expect.stringContaining("max_entries = 5000000"),
    });
    expect(temps(cache)).toEqual([]);
    const shas = existsSync(join(cache, "sha256")) ? readdirSync(join(cache, "sha256")) : [];
    for (const s of shas)
      expect(
        createHash("sha256")
          .update(readFileSync(join(cache, "sha256", s)))
          .digest("hex"),
      ).toBe(s);
  });

  it("a blob the registry serves with other content fails with expected and actual digests; nothing is kept", async () => {
    const cache = join(work, "c-tamper");
    const reg2 = await startRegistry();
    try {
      await skopeo([`oci:${layout}:1`, `docker://${reg2.host}/app:1`, "--dest-tls-verify=false"]);
      const probe = await load(`${reg2.host}/app:1`, join(work, "c-probe"));
      await probe.close();
      const layer = probe.image.layers[0]!.digest!.slice(7);
      const data = join(reg2.dir, "data", "docker", "registry", "v2", "blobs", "sha256", layer.slice(0, 2), layer, "data");
      const bytes = readFileSync(data);
      bytes.writeUInt8(bytes.readUInt8(bytes.length - 12) ^ 0x55, bytes.length - 12); // inside the deflate stream's tail / crc
      writeFileSync(data, bytes);
      const err = await load(`${reg2.host}/app:1`, cache).catch((e: Error) => e);
      expect(err).toMatchObject({ name: "OciError" });
      expect(["FLEDGE_OCI_DIGEST", "FLEDGE_OCI_FORMAT"]).toContain((err as unknown as { code: string }).code);
      expect(existsSync(join(cache, "sha256", layer))).toBe(false);
      expect(temps(cache)).toEqual([]);
    } finally {
      await reg2.stop();
    }
  });
});

/**
 * A misbehaving registry in front of the real one (through FLEDGE_MIRRORS): it forwards
 * everything, except that blob answers go through `mangle`.
 */
async function proxy(target: string, mangle: (path: string, body: Buffer, res: import("node:http").ServerResponse, hit: number) => boolean) {
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    const hit = (hits.get(path) ?? 0) + 1;
    hits.set(path, hit);
    const up = httpRequest(`${target}${path}`, { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (r) => {
      const parts: Buffer[] = [];
      r.on("data", (c: Buffer) => parts.push(c));
      r.on("end", () => {
        const body = Buffer.concat(parts);
        if (r.statusCode === 200 && path.includes("/blobs/") && mangle(path, body, res, hit)) return;
        res.writeHead(r.statusCode ?? 502, r.headers);
        res.end(body);
      });
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { url, hits, close: () => new Promise((r) => server.close(r)) };
}

describe("a misbehaving registry (a proxy through FLEDGE_MIRRORS)", () => {
  const through = (p: { url: string }, cacheDir: string) =>
    new Fetcher({ cacheDir, env: { ...process.env, HOME: join(work, "nohome"), FLEDGE_MIRRORS: `http://${registry.host}/=${p.url}` }, http: { retries: 2, retryBaseMs: 10, maxRetryAfterMs: 2000 } });
  const isLayer = (path: string, body: Buffer) => body[0] === 0x1f && body[1] === 0x8b && path.includes("/blobs/");

  it("a blob with other content: the digest error names expected and actual, nothing is kept", async () => {
    const other = await import("node:zlib").then((z) => z.gzipSync(Buffer.alloc(10240)));
    const p = await proxy(registry.url, (path, body, res) => {
      if (!isLayer(path, body)) return false;
      const fake = Buffer.concat([other, Buffer.alloc(Math.max(0, body.length - other.length))]).subarray(0, body.length);
      res.writeHead(200, { "content-length": fake.length }).end(fake);
      return true;
    });
    const cache = join(work, "c-proxy-digest");
    try {
      const err = await load(`${registry.host}/app:1`, cache, {}, through(p, cache)).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: "OciError", code: "FLEDGE_OCI_DIGEST", message: expect.stringMatching(/does not match its digest\n {2}expected sha256:[0-9a-f]{64}\n {2}actual {3}sha256:[0-9a-f]{64}/) });
      expect(temps(cache)).toEqual([]);
    } finally {
      await p.close();
    }
  });

  it("a blob cut short: the truncation is named, retried, and nothing is kept", async () => {
    const p = await proxy(registry.url, (path, body, res) => {
      if (!isLayer(path, body)) return false;
      res.writeHead(200, { "content-length": body.length });
      res.write(body.subarray(0, Math.floor(body.length / 2)));
      res.destroy();
      return true;
    });
    const cache = join(work, "c-proxy-trunc");
    try {
      await expect(load(`${registry.host}/app:1`, cache, {}, through(p, cache))).rejects.toMatchObject({ code: "FLEDGE_OCI_TRUNCATED", message: expect.stringMatching(/ended after \d+ of \d+ bytes/) });
      const layerHits = [...p.hits].filter(([k]) => k.includes("/blobs/")).map(([, n]) => n);
      expect(Math.max(...layerHits)).toBe(3); // the first attempt and two retries
      expect(temps(cache)).toEqual([]);
    } finally {
      await p.close();
    }
  });

  it("429 with Retry-After is waited out; one longer than fledge waits says what to do", async () => {
    const p = await proxy(registry.url, (path, body, res, hit) => {
      if (!isLayer(path, body) || hit > 1) return false;
      res.writeHead(429, { "retry-after": "1" }).end("slow down");
      return true;
    });
    const cache = join(work, "c-proxy-429");
    const logs: string[] = [];
    try {
      const f = through(p, cache);
      const img = await load(`${registry.host}/app:1`, cache, { log: (_l, m) => logs.push(m) }, new Fetcher({ cacheDir: cache, env: f.env, http: { retries: 2, retryBaseMs: 10 }, onLog: (_l, m) => logs.push(m) }));
      expect(snapshot(img)).toEqual(expected);
      await img.close();
      expect(logs.join("\n")).toMatch(/HTTP 429.*retry 1\/2/);
    } finally {
      await p.close();
    }
    const q = await proxy(registry.url, (path, body, res) => {
      if (!isLayer(path, body)) return false;
      res.writeHead(429, { "retry-after": "3600" }).end("come back in an hour");
      return true;
    });
    try {
      const c2 = join(work, "c-proxy-429b");
      await expect(load(`${registry.host}/app:1`, c2, {}, through(q, c2))).rejects.toMatchObject({ message: expect.stringMatching(/retry after 3600 s/), hint: expect.stringMatching(/try again later|mirror/) });
    } finally {
      await q.close();
    }
  });
});

describe("token authentication (distribution's token auth, a token server on 127.0.0.1)", () => {
  let tokens: TokenServer;
  let secure: TestRegistry;
  beforeAll(async () => {
    tokens = await startTokenServer("fledge", "s3cret");
    secure = await startRegistry({ auth: tokens.auth });
    await skopeo([`oci:${layout}:1`, `docker://${secure.host}/private/app:1`, "--dest-tls-verify=false", "--dest-creds", "fledge:s3cret"]);
  }, 60_000);
  afterAll(async () => {
    await secure?.stop();
    await tokens?.stop();
  });

  const withEnv = (env: NodeJS.ProcessEnv, cache: string) => new Fetcher({ cacheDir: cache, env: { PATH: process.env.PATH, ...env }, http: { retries: 0 } });

  it("reads credentials from ~/.docker/config.json auths", async () => {
    const home = join(work, "home-docker");
    mkdirSync(join(home, ".docker"), { recursive: true });
    writeFileSync(join(home, ".docker", "config.json"), JSON.stringify({ auths: { [`http://${secure.host}`]: { auth: Buffer.from("fledge:s3cret").toString("base64") } } }));
    const cache = join(work, "c-auth1");
    const img = await load(`${secure.host}/private/app:1`, cache, { env: { HOME: home } }, withEnv({ HOME: home }, cache));
    expect(snapshot(img)).toEqual(expected);
    await img.close();
    const used = tokens.requests.filter((r) => r.scope === "repository:private/app:pull");
    expect(used.length).toBeGreaterThan(0);
    expect(used.every((r) => r.authorization === `Basic ${Buffer.from("fledge:s3cret").toString("base64")}`)).toBe(true);
  });

  it("reads REGISTRY_AUTH_FILE (containers' auth.json, a namespaced key)", async () => {
    const file = join(work, "auth.json");
    writeFileSync(file, JSON.stringify({ auths: { [`${secure.host}/private`]: { auth: Buffer.from("fledge:s3cret").toString("base64") } } }));
    const cache = join(work, "c-auth2");
    const env = { HOME: join(work, "nohome"), REGISTRY_AUTH_FILE: file };
    const img = await load(`${secure.host}/private/app:1`, cache, { env }, withEnv(env, cache));
    expect(img.image.layers.length).toBe(3);
    await img.close();
  });

  it("without credentials, or with wrong ones, says what to configure", async () => {
    const cache = join(work, "c-auth3");
    const env = { HOME: join(work, "nohome") };
    await expect(load(`${secure.host}/private/app:1`, cache, { env }, withEnv(env, cache))).rejects.toMatchObject({
      code: "FLEDGE_OCI_AUTH",
      message: expect.stringContaining("needs credentials and none are configured"),
      hint: expect.stringContaining(`docker login ${secure.host}`),
    });
    const file = join(work, "bad-auth.json");
    writeFileSync(file, JSON.stringify({ auths: { [secure.host]: { username: "fledge", password: "wrong" } } }));
    const env2 = { ...env, REGISTRY_AUTH_FILE: file };
    await expect(load(`${secure.host}/private/app:1`, cache, { env: env2 }, withEnv(env2, cache))).rejects.toMatchObject({
      code: "FLEDGE_OCI_AUTH",
      message: expect.stringContaining(`refused the credentials for ${secure.host} from ${file}`),
    });
    expect(temps(cache)).toEqual([]);
  });
});

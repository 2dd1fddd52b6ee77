import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initBinaryPath } from "@fledge/cinit";
import { Fetcher } from "@fledge/fetch";
import { bytes, checksumLine, startFakeGitHub, startServer, type FakeGitHub, type TestServer } from "@fledge/fetch/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { build, updateLock } from "./build.js";
import type { FledgePlugin } from "./builder.js";
import type { LogEvent } from "./context.js";
import { InputSet, type InputRequest, type LockMode } from "./inputs.js";
import { formatLock, readLock, type Lockfile } from "./lockfile.js";

const BUSYBOX = await readFile("/bin/busybox");
const BB_SHA = createHash("sha256").update(BUSYBOX).digest("hex");
const K1 = Buffer.from("\x7fELF kestrel v0.1.0\n");
const K2 = Buffer.from("\x7fELF kestrel v0.2.0\n");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const HAS_INIT = (() => {
  try {
    return !!initBinaryPath("x86_64");
  } catch {
    return false;
  }
})();
const HTTP = { retries: 1, retryBaseMs: 5, retryMaxMs: 10, idleTimeoutMs: 500, connectTimeoutMs: 500 };

let srv: TestServer;
let gh: FakeGitHub;
let root: string;
let n = 0;

beforeAll(async () => {
  srv = await startServer({ "/busybox": bytes(BUSYBOX), "/dl/busybox": bytes(BUSYBOX) });
  gh = await startFakeGitHub({
    latest: "v0.1.0",
    releases: [
      { tag: "v0.1.0", assets: { kestrel: K1, "checksums.txt": checksumLine(K1, "kestrel") } },
      { tag: "v0.2.0", assets: { kestrel: K2, "checksums.txt": checksumLine(K2, "kestrel") } },
    ],
  });
});
afterAll(async () => {
  await srv.close();
  await gh.close();
});
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "fledge-lock-"));
  srv.log.length = 0;
  gh.log.length = 0;
  gh.latest = "v0.1.0";
});
afterEach(() => rm(root, { recursive: true, force: true }));

/** A none-mode project whose busybox comes from `busyboxUrl`. */
async function project(busyboxUrl: string, extra = ""): Promise<string> {
  const dir = join(root, `p${++n}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "init.sh"), "#!/bin/sh\nexec /bin/sh\n");
  await chmod(join(dir, "init.sh"), 0o755);
  await writeFile(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "${busyboxUrl}"\n${extra}\n[mappings]\n"./init.sh" = "/init"\n`);
  await writeFile(join(dir, "manifest.toml"), `name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

async function run(dir: string, opts: { offline?: boolean; locked?: boolean; env?: NodeJS.ProcessEnv; cache?: string; out?: string; plugins?: FledgePlugin[] } = {}) {
  const logs: LogEvent[] = [];
  const result = await build({
    config: join(dir, "fledge.toml"),
    output: join(dir, opts.out ?? "plugin.cpio.gz"),
    cacheDir: opts.cache ?? join(root, "cache"),
    offline: opts.offline,
    locked: opts.locked,
    env: opts.env ?? {},
    plugins: opts.plugins,
    onBuilder: (b) => b.hooks.log.tap("test", (e) => logs.push(e)),
  });
  return { result, logs };
}
async function failure(p: Promise<unknown>): Promise<Error & { code?: string; hint?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a failure");
}
const ls = async (d: string) => (await readdir(d).catch(() => [])).sort();

describe("builds and the download cache", () => {
  it("building the same config twice: the second build makes no request", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const a = await run(dir);
    expect(srv.log).toEqual(["/busybox"]);
    const b = await run(dir, { out: "again.cpio.gz" });
    expect(srv.log).toEqual(["/busybox"]);
    expect(b.result.artifact.sha256).toBe(a.result.artifact.sha256);
    expect(b.logs.some((l) => l.message.includes("from the cache"))).toBe(true);
  });

  it("with the server stopped, --offline builds from the cache; without a cache it lists what is missing", async () => {
    const tmp = await startServer({ "/busybox": bytes(BUSYBOX) });
    const dir = await project(`${tmp.url}/busybox`);
    await run(dir);
    await tmp.close();
    const off = await run(dir, { offline: true, out: "off.cpio.gz" });
    expect(existsSync(off.result.artifact.path)).toBe(true);
    const e = await failure(run(dir, { offline: true, cache: join(root, "empty-cache"), out: "none.cpio.gz" }));
    expect(e.message).toContain(`busybox: ${tmp.url}/busybox (sha256:${BB_SHA}) is not in the cache and the network is off (--offline)`);
    expect(e.hint).toContain("fledge cache add");
    expect(existsSync(join(dir, "none.cpio.gz"))).toBe(false);
  });

  it("FLEDGE_MIRRORS makes a busybox.net config build against a local server, showing the rewrite", async () => {
    const url = "https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";
    const dir = await project(url, `busybox_sha256 = "${BB_SHA}"`);
    const { logs } = await run(dir, { env: { FLEDGE_MIRRORS: `https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=${srv.url}/dl/` } });
    expect(srv.log).toEqual(["/dl/busybox"]);
    expect(logs).toContainEqual({ level: "debug", source: "fledge:fetch", message: expect.stringContaining(`busybox: ${url} → ${srv.url}/dl/busybox`) });
    // the lock records the URL as written, not the mirror
    expect((await readLock(join(dir, "fledge.lock")))!.inputs.busybox).toEqual({ source: "url", url, sha256: BB_SHA });
  });

  it("[fetch] mirrors in fledge.toml work the same way", async () => {
    const dir = await project("https://busybox.net/x/busybox", `[fetch.mirrors]\n"https://busybox.net/x/" = "${srv.url}/dl/"`);
    await run(dir);
    expect(srv.log).toEqual(["/dl/busybox"]);
  });

  it("a checksum mismatch leaves no artifact, no manifest, no cache entry and no lock", async () => {
    const dir = await project(`${srv.url}/busybox`, `busybox_sha256 = "sha256:${"ab".repeat(32)}"`);
    const e = await failure(run(dir));
    expect(e.message).toContain(`expected ${"ab".repeat(32)}`);
    expect(e.message).toContain(`actual   ${BB_SHA}`);
    expect((await ls(dir)).filter((f) => !["fledge.toml", "manifest.toml", "init.sh"].includes(f))).toEqual([]);
    expect(await ls(join(root, "cache", "sha256"))).toEqual([]);
    expect(await ls(join(root, "cache", "tmp"))).toEqual([]);
  });

  it("several builds at once share the cache safely", { timeout: 60_000 }, async () => {
    const dir = await project(`${srv.url}/busybox`);
    const results = await Promise.all([0, 1, 2, 3].map((i) => run(dir, { out: `c${i}.cpio.gz` })));
    expect(new Set(results.map((r) => r.result.artifact.sha256)).size).toBe(1);
    expect(await ls(join(root, "cache", "sha256"))).toEqual([BB_SHA]);
    expect(await ls(join(root, "cache", "tmp"))).toEqual([]);
    expect((await ls(dir)).filter((f) => f.startsWith(".fledge-tmp"))).toEqual([]);
    expect((await readLock(join(dir, "fledge.lock")))!.inputs.busybox!.sha256).toBe(BB_SHA);
  }); // four builds at once on a shared 2-core machine
});

describe("fledge.lock in builds", () => {
  it("is written after a successful build, small and sorted, and reused by the next", async () => {
    const dir = await project(`${srv.url}/busybox`);
    await run(dir);
    const text = await readFile(join(dir, "fledge.lock"), "utf8");
    expect(text).toBe(
      "# fledge.lock: what the inputs of fledge.toml resolved to. Written by fledge; commit it.\n" +
        '# Builds reuse these exact bytes; "fledge update" resolves them again.\n' +
        "version = 1\n\n[busybox]\n" +
        `source = "url"\nurl = "${srv.url}/busybox"\nsha256 = "${BB_SHA}"\n`,
    );
    expect((await run(dir, { locked: true, out: "l.cpio.gz" })).result.artifact.sha256).toBeTruthy();
  });

  it("is not written when the build fails after the inputs resolved", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const late: FledgePlugin = {
      name: "test:late-failure",
      apply(b) {
        b.hooks.beforeArchive.tap("test:late-failure", () => {
          throw new Error("late failure");
        });
      },
    };
    await expect(run(dir, { plugins: [late] })).rejects.toThrow(/late failure/);
    expect(srv.log).toEqual(["/busybox"]);
    expect(await ls(dir)).toEqual(["fledge.toml", "init.sh", "manifest.toml"]);
  });

  it("round-trips any URL through TOML escapes, sorted by input name", async () => {
    const lock: Lockfile = {
      version: 1,
      inputs: {
        zeta: { source: "url", url: 'https://x/"quoted"\\back\u00e9\n', sha256: "0".repeat(64) },
        agent: { source: "release", repo: "o/r", asset: "k", version: "latest", tag: "v1", url: "https://y/k", sha256: "1".repeat(64) },
        "image:docker.io/library/x:1": { source: "oci", reference: "docker.io/library/x:1", digest: "sha256:" + "2".repeat(64), platform: "linux/amd64" },
      },
    };
    const text = formatLock(lock);
    expect(text.indexOf("[agent]")).toBeLessThan(text.indexOf("[zeta]"));
    await writeFile(join(root, "fledge.lock"), text);
    expect(await readLock(join(root, "fledge.lock"))).toEqual(lock);
  });

  it("is not written for a local busybox (nothing to pin)", async () => {
    const dir = await project("file:///bin/busybox");
    await run(dir);
    expect(existsSync(join(dir, "fledge.lock"))).toBe(false);
    await run(dir, { locked: true, out: "l.cpio.gz" });
  });

  it("--locked fails on a missing lock and on a stale one, and writes nothing", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const e = await failure(run(dir, { locked: true }));
    expect(e.code).toBe("FLEDGE_LOCKED");
    expect(e.message).toBe(`--locked: ${join(dir, "fledge.lock")} is missing, so busybox would be resolved afresh`);
    expect(e.hint).toContain("fledge update");
    expect(existsSync(join(dir, "fledge.lock"))).toBe(false);
    expect(srv.log).toEqual([]);
    await run(dir);
    await writeFile(join(dir, "fledge.toml"), (await readFile(join(dir, "fledge.toml"), "utf8")).replace("/busybox", "/dl/busybox"));
    const stale = await failure(run(dir, { locked: true }));
    expect(stale.message).toContain(`busybox: fledge.toml asks for ${srv.url}/dl/busybox, the lock has ${srv.url}/busybox`);
    // without --locked the changed input is resolved again and the lock follows
    await run(dir);
    expect((await readLock(join(dir, "fledge.lock")))!.inputs.busybox!.url).toBe(`${srv.url}/dl/busybox`);
  });

  it("an unpinned download is pinned by the lock: changed bytes on the server fail the build", async () => {
    const moving = await startServer({ "/busybox": bytes(BUSYBOX) });
    try {
      const dir = await project(`${moving.url}/busybox`);
      await run(dir);
      moving.route("/busybox", bytes("something else"));
      await rm(join(root, "cache"), { recursive: true });
      const e = await failure(run(dir, { out: "x.cpio.gz" }));
      expect(e.message).toContain("sha256 mismatch");
      expect(e.hint).toBe(`fledge.lock pins busybox to sha256:${BB_SHA}; if the new content is expected, run "fledge update"`);
      expect(existsSync(join(dir, "x.cpio.gz"))).toBe(false);
    } finally {
      await moving.close();
    }
  });

  it("a fledge.lock that is a FIFO is refused, not waited on", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const { execFileSync } = await import("node:child_process");
    execFileSync("mkfifo", [join(dir, "fledge.lock")]);
    const e = await failure(run(dir));
    expect(e.message).toMatch(/fledge\.lock is a FIFO/);
    expect(e.hint).toContain("must be a regular file");
  });

  it("refuses a malformed lock with a hint", async () => {
    const dir = await project(`${srv.url}/busybox`);
    await writeFile(join(dir, "fledge.lock"), "version = 1\n[busybox]\nurl = 3\n");
    const e = await failure(run(dir));
    expect(e.message).toContain("[busybox] url is not a string");
    expect(e.hint).toContain("fledge update");
  });
});

describe("the kestrel agent through fledge.lock (resolver layer, default mode)", () => {
  async function agentProject(agent = `[agent]\nsource_strategy = "release"\nversion = "latest"\n`): Promise<string> {
    const dir = join(root, `a${++n}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n${agent}\n[source]\nbusybox_url = "${srv.url}/busybox"\n`);
    agents.set(dir, agent);
    return dir;
  }
  const env = () => ({ FLEDGE_GITHUB_API: gh.api });
  /** The agent's and busybox's requests, as the built-in plugins declare them for this config. */
  function requests(agentToml: string): InputRequest[] {
    const out: InputRequest[] = [{ name: "busybox", url: `${srv.url}/busybox`, checksumKey: "busybox_sha256" }];
    const version = /version = "([^"]+)"/.exec(agentToml)?.[1];
    const url = /url = "([^"]+)"/.exec(agentToml)?.[1];
    if (agentToml.includes('"release"')) out.unshift({ name: "agent", label: "kestrel", release: { repo: "volantvm/volant", version: version!, asset: "kestrel" } });
    else if (url) out.unshift({ name: "agent", label: "kestrel", url, checksumKey: "[agent] checksum" });
    return out;
  }
  const agents = new Map<string, string>();
  async function resolveWith(dir: string, opts: { lock?: Lockfile; mode?: LockMode; offline?: boolean; cache?: string } = {}) {
    const fetcher = new Fetcher({ cacheDir: opts.cache ?? join(root, "cache"), env: env(), offline: opts.offline, http: HTTP });
    const warnings: string[] = [];
    const lockFile = join(dir, "fledge.lock");
    if (opts.lock) await writeFile(lockFile, formatLock(opts.lock));
    else await rm(lockFile, { force: true });
    try {
      const set = new InputSet({ lockFile, baseDir: dir, fetcher, mode: opts.mode ?? "auto", log: { warn: (m) => warnings.push(m), info: () => {} } });
      for (const r of requests(agents.get(dir)!)) set.add(r as never);
      await set.resolve();
      const agent = await set.file("agent");
      return { lock: await set.lock(), agent, bytes: await readFile(agent.path), warnings };
    } finally {
      await fetcher.close();
    }
  }
  const update = (dir: string) => updateLock({ config: join(dir, "fledge.toml"), cacheDir: join(root, "cache"), env: env(), fetcher: new Fetcher({ cacheDir: join(root, "cache"), env: env(), http: HTTP }) });

  it("release latest resolves through the API, verified by checksums.txt", async () => {
    const dir = await agentProject();
    const r = await resolveWith(dir);
    expect(r.bytes.equals(K1)).toBe(true);
    expect(r.lock.inputs.agent).toEqual({ source: "release", repo: "volantvm/volant", asset: "kestrel", version: "latest", tag: "v0.1.0", url: `${gh.url}/download/v0.1.0/kestrel`, sha256: sha(K1) });
    expect(gh.apiHits()).toBe(1);
  });

  it("the lock pins latest: a newer release is ignored until fledge update moves it; --locked catches a stale lock", async () => {
    const dir = await agentProject();
    const first = await update(dir);
    expect(first.written).toBe(true);
    expect(first.lock.inputs.agent!.tag).toBe("v0.1.0");
    const lock = (await readLock(join(dir, "fledge.lock")))!;
    expect(formatLock(lock)).toBe(await readFile(join(dir, "fledge.lock"), "utf8"));

    gh.latest = "v0.2.0";
    gh.log.length = 0;
    const pinned = await resolveWith(dir, { lock, mode: "locked" });
    expect(pinned.bytes.equals(K1)).toBe(true);
    expect(gh.log).toEqual([]); // same bytes from the cache, and no API call

    const moved = await update(dir);
    expect(moved.changes).toEqual([{ key: "agent", from: lock.inputs.agent, to: expect.objectContaining({ tag: "v0.2.0", sha256: sha(K2) }) }]);
    const after = (await readLock(join(dir, "fledge.lock")))!;
    expect((await resolveWith(dir, { lock: after, mode: "locked" })).bytes.equals(K2)).toBe(true);

    // a config that asks for another version makes the lock stale for --locked
    const tagged = await agentProject(`[agent]\nsource_strategy = "release"\nversion = "v0.1.0"\n`);
    const e = await failure(resolveWith(tagged, { lock: after, mode: "locked" }));
    expect(e.message).toContain("kestrel: fledge.toml asks for release v0.1.0 of volantvm/volant, the lock has release latest (v0.2.0)");
    expect((await failure(resolveWith(tagged, { mode: "locked" }))).message).toContain("is missing, so kestrel and busybox would be resolved afresh");
  });

  it("--offline with no cache and no lock lists both busybox and kestrel", async () => {
    const dir = await agentProject();
    const e = await failure(resolveWith(dir, { offline: true, cache: join(root, "nothing") }));
    expect(e.code).toBe("FLEDGE_OFFLINE");
    expect(e.message).toMatch(
      /^--offline: 2 inputs are not available without the network:\n {2}kestrel: release latest of volantvm\/volant is not in fledge.lock.*\n {2}busybox: http:\/\/127\.0\.0\.1:\d+\/busybox is not in the cache/,
    );
    expect(gh.log).toEqual([]);
    expect(srv.log).toEqual([]);
  });

  it("a bad checksums.txt fails and caches nothing", async () => {
    gh.addRelease({ tag: "v0.3.0", assets: { kestrel: K2, "checksums.txt": checksumLine(K1, "kestrel") } });
    const dir = await agentProject(`[agent]\nsource_strategy = "release"\nversion = "v0.3.0"\n`);
    const e = await failure(resolveWith(dir, { cache: join(root, "c3") }));
    expect(e.message).toContain("sha256 mismatch");
    expect(await ls(join(root, "c3", "sha256"))).not.toContain(sha(K2));
  });

  it("http without a checksum warns, and the lock pins it", async () => {
    const kserver = await startServer({ "/kestrel": bytes(K2) });
    try {
      const dir = await agentProject(`[agent]\nsource_strategy = "http"\nurl = "${kserver.url}/kestrel"\n`);
      const r = await resolveWith(dir);
      expect(r.warnings[0]).toContain(`kestrel from ${kserver.url}/kestrel has no [agent] checksum`);
      expect(r.lock.inputs.agent).toEqual({ source: "url", url: `${kserver.url}/kestrel`, sha256: sha(K2) });
    } finally {
      await kserver.close();
    }
  });
});

describe("a default-mode build with the agent from a release", () => {
  // Needs fledge's C init (packages/cinit/bin/init-x86_64); skipped, and reported as skipped, until it is built.
  it.skipIf(!HAS_INIT)("puts the locked kestrel at /bin/kestrel and makes no API call the second time", async () => {
    const { gunzipSync } = await import("node:zlib");
    const dir = join(root, "default");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "fledge.toml"), `version = "1"\n[source]\nbusybox_url = "${srv.url}/busybox"\n`);
    await writeFile(join(dir, "manifest.toml"), `name = "d"\nversion = "1.0.0"\n[workload]\nentrypoint = "/bin/kestrel"\nbase_url = "http://127.0.0.1:8000"\n`);
    const env = { FLEDGE_GITHUB_API: gh.api };
    const a = await run(dir, { env });
    const cpio = gunzipSync(await readFile(a.result.artifact.path));
    expect(cpio.includes(K1)).toBe(true);
    gh.latest = "v0.2.0";
    gh.log.length = 0;
    srv.log.length = 0;
    const b = await run(dir, { env, out: "b.cpio.gz" });
    expect(b.result.artifact.sha256).toBe(a.result.artifact.sha256);
    expect(gh.log).toEqual([]);
    expect(srv.log).toEqual([]);
  });
});

describe("inputs declared by plugins (the inputs API)", () => {
  /** A plugin with (a) a plain URL input and (c) a resolver of its own, as an OCI plugin would have. */
  function imagePlugin(server: TestServer, ref: string, seen: string[] = []): FledgePlugin {
    return {
      name: "acme-image",
      apply(b) {
        b.hooks.inputs.tap("acme-image", (inputs) => {
          inputs.add({ name: "extra", url: `${server.url}/extra.bin` });
          inputs.add<{ digest: string; layer: string }>({
            name: `image:${ref}`,
            request: `${ref} for linux/amd64`,
            matches: (e) => e.source === "oci" && e.reference === ref && e.platform === "linux/amd64",
            async resolve(entry, io) {
              let digest = entry?.digest;
              if (!digest) {
                if (io.offline) throw Object.assign(new Error(`${ref} is not in fledge.lock`), { code: "FLEDGE_OFFLINE" });
                const { text } = await io.getText(`${server.url}/v2/${ref}/manifest`, { label: ref });
                digest = JSON.parse(text).layer as string;
              }
              const blob = await io.fetchBlob({ url: `${server.url}/v2/blobs/${digest}`, digest, headers: { authorization: "Bearer t0ken" } });
              seen.push(`${entry ? "locked" : "resolved"} ${blob.fromCache ? "cached" : "fetched"}`);
              return {
                entry: { source: "oci", reference: ref, digest, platform: "linux/amd64", index_digest: `sha256:${"9".repeat(64)}` },
                value: { digest, layer: await readFile(blob.path, "utf8") },
              };
            },
          });
        });
        b.hooks.overlay.tapPromise("acme-image", async (tree, ctx) => {
          const img = await ctx.inputs.get<{ digest: string; layer: string }>(`image:${ref}`);
          tree.addFile("/etc/layer", img.value.layer, { origin: `layer:${img.value.digest}` });
          const extra = await ctx.inputs.file("extra");
          tree.addHostFile("/etc/extra", extra.path, 0o644, extra.size);
        });
      },
    };
  }

  const LAYER1 = Buffer.from("layer one\n");
  const LAYER2 = Buffer.from("layer two\n");
  const d = (b: Buffer) => `sha256:${sha(b)}`;

  it("go through the cache, land in fledge.lock with their own fields, rebuild offline, and fledge update moves them", async () => {
    const reg = await startServer({
      "/extra.bin": bytes("extra bytes"),
      "/v2/app:1/manifest": bytes(JSON.stringify({ layer: d(LAYER1) })),
      [`/v2/blobs/${d(LAYER1)}`]: bytes(LAYER1),
      [`/v2/blobs/${d(LAYER2)}`]: bytes(LAYER2),
    });
    try {
      const dir = await project(`${srv.url}/busybox`);
      const seen: string[] = [];
      const a = await run(dir, { plugins: [imagePlugin(reg, "app:1", seen)] });
      expect(a.result.tree?.get("/etc/layer")).toMatchObject({ origin: `layer:${d(LAYER1)}` });
      expect([...reg.log].sort()).toEqual([`/v2/app:1/manifest`, `/v2/blobs/${d(LAYER1)}`, "/extra.bin"].sort());
      expect(reg.headers.find((_h, i) => reg.log[i]?.startsWith("/v2/blobs"))?.authorization).toBe("Bearer t0ken");
      const text = await readFile(join(dir, "fledge.lock"), "utf8");
      // fields in a fixed order: source, then the resolver's own fields sorted
      expect(text).toContain(`\n["image:app:1"]\nsource = "oci"\ndigest = "${d(LAYER1)}"\nindex_digest = "sha256:${"9".repeat(64)}"\nplatform = "linux/amd64"\nreference = "app:1"\n`);
      expect((await readLock(join(dir, "fledge.lock")))!.inputs["image:app:1"]).toEqual({ source: "oci", reference: "app:1", digest: d(LAYER1), platform: "linux/amd64", index_digest: `sha256:${"9".repeat(64)}` });
      expect((await readLock(join(dir, "fledge.lock")))!.inputs.extra).toEqual({ source: "url", url: `${reg.url}/extra.bin`, sha256: sha(Buffer.from("extra bytes")) });

      // pinned by the lock: no manifest lookup, the blob from the cache by digest, even --offline --locked
      reg.log.length = 0;
      reg.route("/v2/app:1/manifest", bytes(JSON.stringify({ layer: d(LAYER2) })));
      const b = await run(dir, { plugins: [imagePlugin(reg, "app:1", seen)], out: "b.cpio.gz", offline: true, locked: true });
      expect(reg.log).toEqual([]);
      expect(b.result.artifact.sha256).toBe(a.result.artifact.sha256);
      expect(seen).toEqual(["resolved fetched", "locked cached"]);

      // fledge update resolves the plugin's input again (the tag moved), and the lock follows
      const up = await updateLock({ config: join(dir, "fledge.toml"), cacheDir: join(root, "cache"), env: {}, plugins: [imagePlugin(reg, "app:1", seen)] });
      expect(up.changes.map((c) => [c.key, c.from?.digest, c.to?.digest])).toEqual([["image:app:1", d(LAYER1), d(LAYER2)]]);
      const c = await run(dir, { plugins: [imagePlugin(reg, "app:1", seen)], out: "c.cpio.gz", locked: true });
      expect(c.result.artifact.sha256).not.toBe(a.result.artifact.sha256);

      // --locked: a changed request is stale, and so is an entry nothing declares any more
      const e = await failure(run(dir, { plugins: [imagePlugin(reg, "app:2")], out: "d.cpio.gz", locked: true }));
      expect(e.message).toContain("image:app:2: no [image:app:2] entry for app:2 for linux/amd64");
      expect(e.message).toContain("[image:app:1] is no longer an input of fledge.toml");
    } finally {
      await reg.close();
    }
  });

  it("another command's inputs (its own scope) stay in fledge.lock through builds and --locked", async () => {
    const dir = await project(`${srv.url}/busybox`);
    await run(dir);
    const fetcher = new Fetcher({ cacheDir: join(root, "cache"), env: {} });
    try {
      const runSet = new InputSet({ lockFile: join(dir, "fledge.lock"), baseDir: dir, fetcher, mode: "auto", scope: "run" });
      runSet.add({ name: "kernel", scope: "run", url: `${srv.url}/dl/busybox` });
      await runSet.resolve();
      expect((await runSet.writeLock()).written).toBe(true);
    } finally {
      await fetcher.close();
    }
    expect((await readLock(join(dir, "fledge.lock")))!.inputs.kernel).toEqual({ source: "url", scope: "run", url: `${srv.url}/dl/busybox`, sha256: BB_SHA });
    await run(dir, { locked: true, out: "l.cpio.gz" });
    await writeFile(join(dir, "fledge.toml"), (await readFile(join(dir, "fledge.toml"), "utf8")).replace(`${srv.url}/busybox`, `${srv.url}/dl/busybox`));
    await run(dir, { out: "m.cpio.gz" });
    const lock = (await readLock(join(dir, "fledge.lock")))!;
    expect(Object.keys(lock.inputs).sort()).toEqual(["busybox", "kernel"]);
  });

  it("a bad declaration is an error naming the input", async () => {
    const dir = await project(`${srv.url}/busybox`);
    const dup: FledgePlugin = { name: "dup", apply: (b) => b.hooks.inputs.tap("dup", (i) => void i.add({ name: "busybox", url: "http://x/y" })) };
    expect((await failure(run(dir, { plugins: [dup] }))).message).toBe('plugin "dup" failed in hooks.inputs: input "busybox" is declared twice (first by fledge:busybox)');
    const bad: FledgePlugin = { name: "bad", apply: (b) => b.hooks.inputs.tap("bad", (i) => void i.add({ name: "has space", url: "http://x/y" })) };
    expect((await failure(run(dir, { plugins: [bad], out: "x.cpio.gz" }))).message).toContain('input name "has space" is not usable as a fledge.lock table');
  });
});

import { createHash } from "node:crypto";
import { chmod, lstat, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { bytes, startServer, type TestServer } from "./testing.js";
import { Fetcher, type FetcherOptions, type ProgressEvent } from "./fetch.js";
import type { FetchError } from "./errors.js";

const BUSYBOX = await readFile("/bin/busybox");
const SHA = createHash("sha256").update(BUSYBOX).digest("hex");
const FAST = { retries: 2, retryBaseMs: 5, retryMaxMs: 20, idleTimeoutMs: 300, connectTimeoutMs: 500 };

let srv: TestServer;
let dir: string;
const fetchers: Fetcher[] = [];
function fetcher(o: FetcherOptions = {}): Fetcher {
  const f = new Fetcher({ cacheDir: join(dir, "cache"), env: {}, http: FAST, ...o });
  fetchers.push(f);
  return f;
}
async function cacheFiles(sub: string): Promise<string[]> {
  return (await readdir(join(dir, "cache", sub)).catch(() => [])).sort();
}
async function failure(p: Promise<unknown>): Promise<FetchError> {
  try {
    await p;
  } catch (e) {
    return e as FetchError;
  }
  throw new Error("expected a failure");
}

beforeAll(async () => {
  srv = await startServer({ "/busybox": bytes(BUSYBOX) });
});
afterAll(() => srv.close());
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "fledge-fetch-"));
  srv.log.length = 0;
});
afterEach(async () => {
  await Promise.all(fetchers.splice(0).map((f) => f.close()));
  await rm(dir, { recursive: true, force: true });
});

describe("Fetcher.fetch over HTTP", () => {
  it("downloads, verifies against sha256:<HEX> in any case, and serves the second fetch from the cache", async () => {
    const f = fetcher();
    const a = await f.fetch({ url: `${srv.url}/busybox`, sha256: `SHA256:${SHA.toUpperCase()}`, label: "busybox" });
    expect(a).toMatchObject({ sha256: SHA, size: BUSYBOX.length, fromCache: false });
    expect((await readFile(a.path)).equals(BUSYBOX)).toBe(true);
    const b = await f.fetch({ url: `${srv.url}/busybox`, sha256: SHA, label: "busybox" });
    expect(b).toMatchObject({ path: a.path, fromCache: true });
    expect(srv.hits("/busybox")).toBe(1);
    expect(await cacheFiles("tmp")).toEqual([]);
  });

  it("remembers unpinned URLs in the URL index: no second request; refresh downloads again", async () => {
    const f = fetcher();
    const a = await f.fetch({ url: `${srv.url}/busybox`, label: "busybox" });
    expect(a.sha256).toBe(SHA);
    const b = await fetcher().fetch({ url: `${srv.url}/busybox`, label: "busybox" });
    expect(b.fromCache).toBe(true);
    expect(srv.hits("/busybox")).toBe(1);
    await f.fetch({ url: `${srv.url}/busybox`, label: "busybox", refresh: true });
    expect(srv.hits("/busybox")).toBe(2);
  });

  it("a checksum mismatch names expected and actual and leaves nothing in the cache", async () => {
    const wrong = "a".repeat(64);
    const e = await failure(fetcher().fetch({ url: `${srv.url}/busybox`, sha256: wrong, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_CHECKSUM");
    expect(e.message).toContain(`expected ${wrong}`);
    expect(e.message).toContain(`actual   ${SHA}`);
    expect(await cacheFiles("sha256")).toEqual([]);
    expect(await cacheFiles("tmp")).toEqual([]);
    expect(await cacheFiles("urls")).toEqual([]);
  });

  it("retries a 500 and succeeds on the following 200", async () => {
    srv.route("/flaky", (_req, res, hit) => {
      if (hit === 1) {
        res.statusCode = 500;
        res.end("boom");
      } else bytes(BUSYBOX)(_req, res, hit);
    });
    const logs: string[] = [];
    const got = await fetcher({ onLog: (_l, m) => logs.push(m) }).fetch({ url: `${srv.url}/flaky`, sha256: SHA, label: "busybox" });
    expect(got.sha256).toBe(SHA);
    expect(srv.hits("/flaky")).toBe(2);
    expect(logs.join("\n")).toMatch(/HTTP 500 .*retry 1\/2/);
  });

  it("retries 429 and honours Retry-After", async () => {
    srv.route("/busy", (req, res, hit) => {
      if (hit === 1) {
        res.statusCode = 429;
        res.setHeader("retry-after", "1");
        res.end();
      } else bytes("ok")(req, res, hit);
    });
    const t0 = Date.now();
    await fetcher().fetch({ url: `${srv.url}/busy` });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(srv.hits("/busy")).toBe(2);
  });

  it("retries a 403 that carries Retry-After (GitHub's secondary rate limit)", async () => {
    srv.route("/secondary", (req, res, hit) => {
      if (hit === 1) {
        res.statusCode = 403;
        res.setHeader("retry-after", "0");
        res.end();
      } else bytes("ok")(req, res, hit);
    });
    await fetcher().fetch({ url: `${srv.url}/secondary` });
    expect(srv.hits("/secondary")).toBe(2);
  });

  it("refuses to wait for a Retry-After beyond the bound", async () => {
    srv.route("/later", (_req, res) => {
      res.statusCode = 503;
      res.setHeader("retry-after", "3600");
      res.end();
    });
    const e = await failure(fetcher().fetch({ url: `${srv.url}/later`, label: "kestrel" }));
    expect(e.message).toMatch(/retry after 3600 s, longer than fledge waits \(60 s\)/);
    expect(srv.hits("/later")).toBe(1);
  });

  it("gives up on 5xx after the bounded number of retries", async () => {
    srv.route("/down", (_req, res) => {
      res.statusCode = 502;
      res.end();
    });
    const e = await failure(fetcher().fetch({ url: `${srv.url}/down`, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_HTTP");
    expect(e.message).toContain(`${srv.url}/down answered HTTP 502 Bad Gateway`);
    expect(e.message).toContain("gave up after 3 attempts");
    expect(srv.hits("/down")).toBe(3);
  });

  it("a server that never answers hits the timeout", async () => {
    srv.route("/slow", () => {
      /* never answer */
    });
    const t0 = Date.now();
    const e = await failure(fetcher({ http: { ...FAST, retries: 1 } }).fetch({ url: `${srv.url}/slow`, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_TIMEOUT");
    expect(e.message).toContain("no response within 300 ms");
    expect(srv.hits("/slow")).toBe(2);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("a server whose accept queue is full hits the connect timeout", async () => {
    // A listener that is stopped never accepts: once its backlog is full, SYNs go unanswered.
    const { spawn } = await import("node:child_process");
    const { connect } = await import("node:net");
    const child = spawn(process.execPath, ["-e", "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log('PORT=' + this.address().port) })"], {
      env: { PATH: process.env.PATH },
    });
    const fillers: import("node:net").Socket[] = [];
    try {
      let out = "";
      const port = await new Promise<number>((r) =>
        child.stdout.on("data", (d) => {
          out += d;
          const m = /PORT=(\d+)/.exec(out);
          if (m) r(Number(m[1]));
        }),
      );
      child.kill("SIGSTOP");
      for (let i = 0; i < 4; i++) fillers.push(connect(port, "127.0.0.1").on("error", () => {}));
      await new Promise((r) => setTimeout(r, 200));
      const e = await failure(fetcher({ http: { ...FAST, retries: 1, connectTimeoutMs: 300 } }).fetch({ url: `http://127.0.0.1:${port}/busybox`, label: "busybox" }));
      expect(e.code).toBe("FLEDGE_TIMEOUT");
      expect(e.message).toBe(`busybox: cannot download http://127.0.0.1:${port}/busybox: could not connect within 300 ms (gave up after 2 attempts)`);
    } finally {
      for (const f of fillers) f.destroy();
      child.kill("SIGKILL");
    }
  });

  it("a body that stalls mid-way times out and the retry starts over", async () => {
    srv.route("/stall", (_req, res, hit) => {
      res.setHeader("content-length", BUSYBOX.length);
      if (hit === 1)
        res.write(BUSYBOX.subarray(0, 1000)); // then nothing
      else res.end(BUSYBOX);
    });
    const got = await fetcher().fetch({ url: `${srv.url}/stall`, sha256: SHA });
    expect(got.size).toBe(BUSYBOX.length);
    expect(srv.hits("/stall")).toBe(2);
  });

  it("a connection dropped mid-body is retried from scratch", async () => {
    srv.route("/drop", (_req, res, hit) => {
      res.setHeader("content-length", BUSYBOX.length);
      if (hit === 1) res.write(BUSYBOX.subarray(0, 50_000), () => res.socket?.destroy());
      else res.end(BUSYBOX);
    });
    const got = await fetcher().fetch({ url: `${srv.url}/drop`, sha256: SHA });
    expect(got.size).toBe(BUSYBOX.length);
    expect(srv.hits("/drop")).toBe(2);
  });

  it("follows a redirect chain and reports the final URL", async () => {
    const to = (p: string) => (_req: unknown, res: import("node:http").ServerResponse) => {
      res.statusCode = 302;
      res.setHeader("location", p);
      res.end();
    };
    srv.route("/r1", to("/r2"));
    srv.route("/r2", to(`${srv.url}/r3`));
    srv.route("/r3", to("/busybox"));
    const got = await fetcher().fetch({ url: `${srv.url}/r1`, sha256: SHA });
    expect(got.fetchedFrom).toBe(`${srv.url}/busybox`);
    expect(srv.log).toEqual(["/r1", "/r2", "/r3", "/busybox"]);
  });

  it("names a redirect loop and does not retry it", async () => {
    const to = (p: string) => (_req: unknown, res: import("node:http").ServerResponse) => {
      res.statusCode = 301;
      res.setHeader("location", p);
      res.end();
    };
    srv.route("/x", to("/y"));
    srv.route("/y", to("/x"));
    const e = await failure(fetcher().fetch({ url: `${srv.url}/x`, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_REDIRECT");
    expect(e.message).toBe(`busybox: redirect loop: ${srv.url}/x → ${srv.url}/y → ${srv.url}/x`);
    expect(srv.log).toEqual(["/x", "/y"]);
  });

  it("bounds the number of redirects", async () => {
    srv.route("/hop", (req, res) => {
      const n = Number(new URL(req.url!, srv.url).searchParams.get("n") ?? 0);
      res.statusCode = 302;
      res.setHeader("location", `/hop?n=${n + 1}`);
      res.end();
    });
    const e = await failure(fetcher({ http: { ...FAST, maxRedirects: 3 } }).fetch({ url: `${srv.url}/hop` }));
    expect(e.message).toContain(`more than 3 redirects starting at ${srv.url}/hop`);
    expect(srv.hits("/hop")).toBe(4);
  });

  it("a 404 names the URL and is not retried", async () => {
    const e = await failure(fetcher().fetch({ url: `${srv.url}/nope/busybox`, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_HTTP");
    expect(e.status).toBe(404);
    expect(e.message).toBe(`busybox: ${srv.url}/nope/busybox answered HTTP 404 Not Found: not found`);
    expect(srv.hits("/nope/busybox")).toBe(1);
    expect(e.headers?.["content-length"]).toBe("9");
  });

  it("enforces the size limit, with and without Content-Length", async () => {
    srv.route("/chunked", (_req, res) => {
      res.write(BUSYBOX.subarray(0, 600_000));
      res.end(BUSYBOX.subarray(600_000, 1_200_000));
    });
    const f = fetcher({ http: { ...FAST, maxBytes: 500_000 } });
    expect((await failure(f.fetch({ url: `${srv.url}/busybox` }))).message).toMatch(/is 1982256 bytes|is \d+ bytes, more than the limit of 500000/);
    const e = await failure(f.fetch({ url: `${srv.url}/chunked` }));
    expect(e.code).toBe("FLEDGE_TOOBIG");
    expect(await cacheFiles("sha256")).toEqual([]);
    expect(await cacheFiles("tmp")).toEqual([]);
  });

  it("retries a refused connection, then says so", async () => {
    const gone = await startServer();
    const url = `${gone.url}/busybox`;
    await gone.close();
    const e = await failure(fetcher().fetch({ url, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_NETWORK");
    expect(e.message).toBe(`busybox: cannot download ${url}: connection refused (gave up after 3 attempts)`);
  });

  it("reports progress with bytes, total and rate, ending with done", async () => {
    const events: ProgressEvent[] = [];
    await fetcher({ onProgress: (e) => events.push({ ...e }) }).fetch({ url: `${srv.url}/busybox`, label: "busybox" });
    const last = events.at(-1)!;
    expect(last).toMatchObject({ label: "busybox", bytes: BUSYBOX.length, total: BUSYBOX.length, done: true });
    expect(last.rate).toBeGreaterThan(0);
    expect(events.length).toBeGreaterThan(2);
    for (let i = 1; i < events.length; i++) expect(events[i]!.bytes).toBeGreaterThanOrEqual(events[i - 1]!.bytes);
  });

  it("does not send credentials across origins on redirect", async () => {
    const other = await startServer({ "/file": bytes("x") });
    try {
      srv.route("/go", (_req, res) => {
        res.statusCode = 302;
        res.setHeader("location", `${other.url}/file`);
        res.end();
      });
      await fetcher().getText(`${srv.url}/go`, { label: "t", headers: { authorization: "Bearer secret" } });
      expect(srv.headers.at(-1)!.authorization).toBe("Bearer secret");
      expect(other.headers[0]!.authorization).toBeUndefined();
    } finally {
      await other.close();
    }
  });
});

describe("local inputs", () => {
  it("reads file:// URLs and plain paths in place, verified, without caching them", async () => {
    const f = fetcher();
    const a = await f.fetch({ url: pathToFileURL("/bin/busybox").href, sha256: SHA });
    expect(a).toMatchObject({ path: "/bin/busybox", sha256: SHA, local: true });
    await writeFile(join(dir, "k"), "kestrel");
    const b = await f.fetch({ url: "k", baseDir: dir });
    expect(b.path).toBe(join(dir, "k"));
    expect(await cacheFiles("sha256")).toEqual([]);
  });

  it("refuses a directory, a missing file and a mismatch", async () => {
    const f = fetcher();
    await mkdir(join(dir, "d"));
    expect((await failure(f.fetch({ url: join(dir, "d"), label: "kestrel" }))).message).toBe(`kestrel: ${join(dir, "d")} is a directory, expected a file`);
    expect((await failure(f.fetch({ url: join(dir, "missing") }))).code).toBe("FLEDGE_NOENT");
    expect((await failure(f.fetch({ url: "/bin/busybox", sha256: "0".repeat(64) }))).code).toBe("FLEDGE_CHECKSUM");
  });

  it("rejects a malformed checksum", async () => {
    const e = await failure(fetcher().fetch({ url: "/bin/busybox", sha256: "sha256:xyz", label: "busybox" }));
    expect(e.code).toBe("FLEDGE_INPUT");
    expect(e.message).toContain('busybox: not a sha256: "sha256:xyz"');
  });
});

describe("offline", () => {
  it("never touches the network: a miss fails, a cached entry is served", async () => {
    const off = fetcher({ offline: true });
    const e = await failure(off.fetch({ url: `${srv.url}/busybox`, sha256: SHA, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_OFFLINE");
    expect(e.message).toContain(`${srv.url}/busybox (sha256:${SHA}) is not in the cache`);
    expect((await failure(off.getText(`${srv.url}/api`, { label: "api" }))).code).toBe("FLEDGE_OFFLINE");
    expect(srv.log).toEqual([]);
    await fetcher().fetch({ url: `${srv.url}/busybox` });
    expect((await off.fetch({ url: `${srv.url}/busybox`, sha256: SHA })).fromCache).toBe(true);
    expect((await off.fetch({ url: `${srv.url}/busybox` })).fromCache).toBe(true);
    expect(srv.log).toEqual(["/busybox"]);
  });
});

describe("a shared cache is never trusted (issue 11)", () => {
  const damage = async (path: string, content: Buffer | string) => {
    await chmod(path, 0o644);
    await writeFile(path, content);
  };

  it("a changed and truncated entry is re-verified on the hit, removed and downloaded again", async () => {
    const logs: string[] = [];
    const f = fetcher({ onLog: (l, m) => logs.push(`${l}: ${m}`) });
    const a = await f.fetch({ url: `${srv.url}/busybox`, sha256: SHA, label: "busybox" });
    expect((await stat(a.path)).mode & 0o777).toBe(0o444);
    await damage(a.path, BUSYBOX.subarray(0, 1000));
    const b = await f.fetch({ url: `${srv.url}/busybox`, sha256: SHA, label: "busybox" });
    expect(b).toMatchObject({ sha256: SHA, size: BUSYBOX.length, fromCache: false });
    expect((await readFile(b.path)).equals(BUSYBOX)).toBe(true);
    expect(srv.hits("/busybox")).toBe(2);
    expect(logs.some((l) => l.startsWith(`warn: busybox: cache entry ${a.path} holds content with sha256 `) && l.includes(`expected sha256 ${SHA}`))).toBe(true);
  });

  it("offline (as with --offline --locked), a damaged entry fails naming the entry and both digests, and is removed", async () => {
    const a = await fetcher().fetch({ url: `${srv.url}/busybox`, sha256: SHA });
    const evil = Buffer.concat([BUSYBOX.subarray(0, 5000), Buffer.from("evil")]);
    await damage(a.path, evil);
    const e = await failure(fetcher({ offline: true }).fetch({ url: `${srv.url}/busybox`, sha256: SHA, label: "busybox" }));
    expect(e.code).toBe("FLEDGE_CACHE");
    expect(e.message).toContain(`busybox: cache entry ${a.path} is damaged`);
    expect(e.message).toContain(`expected ${SHA}`);
    expect(e.message).toContain(`actual   ${createHash("sha256").update(evil).digest("hex")}`);
    expect(await cacheFiles("sha256")).toEqual([]);
    expect(srv.hits("/busybox")).toBe(1);
  });

  it("an unpinned URL whose entry was swapped is fetched again", async () => {
    const f = fetcher();
    const a = await f.fetch({ url: `${srv.url}/busybox`, label: "busybox" });
    await damage(a.path, "#!/bin/sh\necho pwned\n");
    const b = await f.fetch({ url: `${srv.url}/busybox`, label: "busybox" });
    expect(b).toMatchObject({ sha256: SHA, fromCache: false });
    expect((await readFile(b.path)).equals(BUSYBOX)).toBe(true);
  });

  it("hands out the very bytes it verified, so swapping the entry afterwards changes nothing", async () => {
    const a = await fetcher().fetch({ url: `${srv.url}/busybox`, sha256: SHA });
    expect(a.data?.equals(BUSYBOX)).toBe(true);
    const b = await fetcher().fetch({ url: `${srv.url}/busybox`, sha256: SHA });
    expect(b.fromCache).toBe(true);
    await damage(b.path, "swapped after verification");
    expect(b.data?.equals(BUSYBOX)).toBe(true);
  });

  it("an entry replaced by a symlink is not followed", async () => {
    const a = await fetcher().fetch({ url: `${srv.url}/busybox`, sha256: SHA });
    await rm(a.path);
    await writeFile(join(dir, "other"), "other");
    await symlink(join(dir, "other"), a.path);
    const b = await fetcher().fetch({ url: `${srv.url}/busybox`, sha256: SHA });
    expect(b.fromCache).toBe(false);
    expect((await lstat(b.path)).isFile()).toBe(true);
    expect(await readFile(join(dir, "other"), "utf8")).toBe("other");
  });
});

describe("mirrors", () => {
  it("rewrites by FLEDGE_MIRRORS before config mirrors, logs the rewrite, and still verifies", async () => {
    const logs: string[] = [];
    const f = fetcher({
      env: { FLEDGE_MIRRORS: `https://busybox.net/=${srv.url}/` },
      mirrors: [{ from: "https://busybox.net/", to: "http://127.0.0.1:9/never/" }],
      onLog: (l, m) => logs.push(`${l}: ${m}`),
    });
    const url = "https://busybox.net/busybox";
    const got = await f.fetch({ url, sha256: SHA, label: "busybox" });
    expect(got).toMatchObject({ url, fetchedFrom: `${srv.url}/busybox` });
    expect(logs).toContain(`debug: busybox: ${url} → ${srv.url}/busybox (mirror https://busybox.net/=${srv.url}/)`);
    const e = await failure(fetcher({ env: { FLEDGE_MIRRORS: `https://busybox.net/=${srv.url}/` } }).fetch({ url: "https://busybox.net/busybox", sha256: "b".repeat(64) }));
    expect(e.code).toBe("FLEDGE_CHECKSUM");
  });

  it("uses the longest matching prefix of config mirrors, and a file:// mirror", async () => {
    const f = fetcher({
      mirrors: [
        { from: "https://example.org/", to: "http://127.0.0.1:9/wrong/" },
        { from: "https://example.org/bin/", to: "file:///bin/" },
      ],
    });
    const got = await f.fetch({ url: "https://example.org/bin/busybox", sha256: SHA });
    expect(got).toMatchObject({ path: "/bin/busybox", url: "https://example.org/bin/busybox" });
  });

  it("a file:// mirror serves --offline builds (no network involved), still verified", async () => {
    const off = fetcher({ offline: true, env: { FLEDGE_MIRRORS: "https://example.org/bin/=file:///bin/" } });
    expect(await off.fetch({ url: "https://example.org/bin/busybox" })).toMatchObject({ path: "/bin/busybox", sha256: SHA, local: true });
    expect((await failure(off.fetch({ url: "https://example.org/bin/busybox", sha256: "c".repeat(64) }))).code).toBe("FLEDGE_CHECKSUM");
    expect((await failure(off.fetch({ url: "https://example.org/other/busybox" }))).code).toBe("FLEDGE_OFFLINE");
  });
});

describe("concurrency", () => {
  it("several fetchers sharing a cache download the same input at once safely", async () => {
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => fetcher().fetch({ url: `${srv.url}/busybox`, sha256: i % 2 ? SHA : undefined, label: `busybox ${i}` })));
    for (const r of results) {
      expect(r.sha256).toBe(SHA);
      expect((await readFile(r.path)).equals(BUSYBOX)).toBe(true);
    }
    expect(await cacheFiles("sha256")).toEqual([SHA]);
    expect(await cacheFiles("tmp")).toEqual([]);
    expect((await cacheFiles("urls")).length).toBe(1);
  });
});

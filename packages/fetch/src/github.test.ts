import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { checksumLine, startFakeGitHub, type FakeGitHub } from "./testing.js";
import { Fetcher } from "./fetch.js";
import { resolveGitHubRelease } from "./github.js";
import type { FetchError } from "./errors.js";

const K1 = Buffer.from("kestrel v0.1.0\n");
const K2 = Buffer.from("kestrel v0.2.0\n");
const sha = (b: Buffer) => checksumLine(b, "x").slice(0, 64);

let gh: FakeGitHub;
let dir: string;
let f: Fetcher;
const mk = (env: NodeJS.ProcessEnv = {}) => new Fetcher({ cacheDir: join(dir, "cache"), env: { FLEDGE_GITHUB_API: gh.api, ...env }, http: { retries: 0 } });

beforeAll(async () => {
  gh = await startFakeGitHub({
    latest: "v0.2.0",
    releases: [
      { tag: "v0.1.0", assets: { kestrel: K1 } },
      { tag: "v0.2.0", assets: { kestrel: K2, "checksums.txt": checksumLine("other", "volar") + checksumLine(K2, "kestrel") } },
      { tag: "v0.3.0-bad", assets: { kestrel: K2, "checksums.txt": checksumLine(K1, "kestrel") } },
      { tag: "v0.4.0-nolist", assets: { kestrel: K2, "checksums.txt": checksumLine(K1, "volar") } },
      { tag: "v0.5.0-noasset", assets: { volar: K1 } },
    ],
  });
});
afterAll(() => gh.close());
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "fledge-gh-"));
  gh.log.length = 0;
  gh.headers.length = 0;
  f = mk();
});
afterEach(async () => {
  await f.close();
  await rm(dir, { recursive: true, force: true });
});
async function failure(p: Promise<unknown>): Promise<FetchError> {
  try {
    await p;
  } catch (e) {
    return e as FetchError;
  }
  throw new Error("expected a failure");
}

describe("resolveGitHubRelease", () => {
  it("resolves latest through the API and takes the sha256 from checksums.txt", async () => {
    const r = await resolveGitHubRelease(f, { version: "latest" });
    expect(r).toMatchObject({ tag: "v0.2.0", url: `${gh.url}/download/v0.2.0/kestrel`, sha256: sha(K2), warnings: [] });
    expect(gh.log).toEqual(["/repos/volantvm/volant/releases/latest", "/download/v0.2.0/checksums.txt"]);
    expect(gh.headers[0]!.accept).toBe("application/vnd.github+json");
    expect(gh.headers[0]!.authorization).toBeUndefined();
    const got = await f.fetch({ url: r.url, sha256: r.sha256, label: "kestrel" });
    expect(got.sha256).toBe(sha(K2));
  });

  it("resolves a tag; with no checksums.txt it warns that the download is not verified", async () => {
    const r = await resolveGitHubRelease(f, { version: "v0.1.0" });
    expect(r.tag).toBe("v0.1.0");
    expect(r.sha256).toBeUndefined();
    expect(r.warnings[0]).toContain("release v0.1.0 of volantvm/volant has no checksums.txt");
    expect(gh.log).toEqual(["/repos/volantvm/volant/releases/tags/v0.1.0"]);
  });

  it("a checksums.txt that disagrees with the asset fails the download and caches nothing", async () => {
    const r = await resolveGitHubRelease(f, { version: "v0.3.0-bad" });
    expect(r.sha256).toBe(sha(K1));
    const e = await failure(f.fetch({ url: r.url, sha256: r.sha256, label: "kestrel" }));
    expect(e.code).toBe("FLEDGE_CHECKSUM");
    expect(e.message).toContain(`expected ${sha(K1)}`);
    expect(e.message).toContain(`actual   ${sha(K2)}`);
    expect(await f.cache.list()).toEqual([]);
  });

  it("refuses a checksums.txt that does not list the asset", async () => {
    const e = await failure(resolveGitHubRelease(f, { version: "v0.4.0-nolist" }));
    expect(e.code).toBe("FLEDGE_RELEASE");
    expect(e.message).toContain('checksums.txt of volantvm/volant v0.4.0-nolist has no line for "kestrel"');
  });

  it("names a missing asset and a missing tag", async () => {
    expect((await failure(resolveGitHubRelease(f, { version: "v0.5.0-noasset" }))).message).toBe('kestrel: release v0.5.0-noasset of volantvm/volant has no asset named "kestrel" (it has: volar)');
    const e = await failure(resolveGitHubRelease(f, { version: "v9.9.9" }));
    expect(e.code).toBe("FLEDGE_RELEASE");
    expect(e.message).toBe(`kestrel: release v9.9.9 of volantvm/volant not found (${gh.api}/repos/volantvm/volant/releases/tags/v9.9.9 answered 404)`);
  });

  it("sends GITHUB_TOKEN as a bearer token to the API only", async () => {
    const t = mk({ GITHUB_TOKEN: "ghp_test" });
    try {
      await resolveGitHubRelease(t, { version: "latest" });
      expect(gh.headers[0]!.authorization).toBe("Bearer ghp_test");
      expect(gh.headers[1]!.authorization).toBeUndefined();
    } finally {
      await t.close();
    }
  });

  it("a rate-limit answer says so and suggests GITHUB_TOKEN", async () => {
    gh.rateLimited = true;
    try {
      const e = await failure(resolveGitHubRelease(f, { version: "latest" }));
      expect(e.code).toBe("FLEDGE_RATELIMIT");
      expect(e.message).toContain("rate limit reached");
      expect(e.message).toContain("until 2030-01-01T00:00:00.000Z");
      expect(e.hint).toContain("set GITHUB_TOKEN");
      expect(gh.apiHits()).toBe(1);
    } finally {
      gh.rateLimited = false;
    }
  });

  it("offline, it does not call the API", async () => {
    const off = new Fetcher({ cacheDir: join(dir, "cache"), env: { FLEDGE_GITHUB_API: gh.api }, offline: true });
    expect((await failure(resolveGitHubRelease(off, { version: "latest" }))).code).toBe("FLEDGE_OFFLINE");
    expect(gh.log).toEqual([]);
  });
});

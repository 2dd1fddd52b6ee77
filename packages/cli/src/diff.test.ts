import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "./index.js";
import { sink } from "./test-sink.js";

const root = mkdtempSync(join(tmpdir(), "fledge-diff-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function fledge(args: string[], cwd: string) {
  const out = sink();
  const err = sink();
  const code = await main(args, { stdout: out.stream, stderr: err.stream, env: { FLEDGE_CACHE_DIR: join(root, "cache") }, cwd });
  return { code, stdout: out.text(), stderr: err.text() };
}

/** A project whose busybox is ./busybox-<version> and whose mappings are given. */
function project(busybox: string, mappings: string): string {
  const dir = join(root, "p");
  mkdirSync(join(dir, "www"), { recursive: true });
  mkdirSync(join(dir, "tools"), { recursive: true });
  writeFileSync(join(dir, "busybox-1.35"), Buffer.alloc(8192, 1));
  writeFileSync(join(dir, "busybox-1.36"), Buffer.concat([Buffer.alloc(8192, 1), Buffer.alloc(1000, 2)]));
  writeFileSync(join(dir, "init.sh"), "#!/bin/sh\nexec /bin/sh\n");
  chmodSync(join(dir, "init.sh"), 0o755);
  writeFileSync(join(dir, "www", "index.html"), "<h1>hi</h1>\n");
  writeFileSync(join(dir, "tools", "jq"), Buffer.alloc(3000, 3));
  writeFileSync(join(dir, "tools", "yq"), Buffer.alloc(500, 4));
  writeFileSync(join(dir, "fledge.toml"), `version = "1"\n[init]\nnone = true\n[source]\nbusybox_url = "./${busybox}"\n[mappings]\n"./init.sh" = "/init"\n${mappings}`);
  writeFileSync(join(dir, "manifest.toml"), `name = "demo"\nversion = "1.0.0"\n[workload]\nentrypoint = "/init"\nbase_url = "http://127.0.0.1:8000"\n`);
  return dir;
}

describe("fledge diff", () => {
  it("between two builds that differ by one mapping and one busybox version shows exactly those, grouped by origin", async () => {
    let dir = project("busybox-1.35", `"./www" = "/srv/www"\n`);
    expect((await fledge(["build", "-q", "-o", join(root, "a.cpio.gz")], dir)).code).toBe(0);
    dir = project("busybox-1.36", `"./www" = "/srv/www"\n"./tools" = "/opt/tools"\n`);
    expect((await fledge(["build", "-q", "-o", join(root, "b.cpio.gz")], dir)).code).toBe(0);

    const r = await fledge(["diff", "--json", join(root, "a.cpio.gz"), join(root, "b.cpio.gz")], root);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d.identical).toBe(false);
    expect(d.entries).toEqual([
      { path: "/bin/busybox", change: "changed", origin: "busybox", before: 8192, after: 9192, what: ["content", "size"] },
      { path: "/opt", change: "added", origin: "mapping:./tools", after: 0 },
      { path: "/opt/tools", change: "added", origin: "mapping:./tools", after: 0 },
      { path: "/opt/tools/jq", change: "added", origin: "mapping:./tools", after: 3000 },
      { path: "/opt/tools/yq", change: "added", origin: "mapping:./tools", after: 500 },
    ]);
    const changed = d.origins.filter((o: { before: number; after: number; added: number; changed: number }) => o.before !== o.after || o.added || o.changed);
    expect(changed).toEqual([
      { origin: "mapping:./tools", added: 4, removed: 0, changed: 0, before: 0, after: 3500 },
      // /bin/busybox and its applet links (each link counts its target's length)
      { origin: "busybox", added: 0, removed: 0, changed: 1, before: expect.any(Number), after: expect.any(Number) },
    ]);
    expect(changed[1].after - changed[1].before).toBe(1000);
    // unchanged origins are there with their sizes, untouched
    expect(d.origins.find((o: { origin: string }) => o.origin === "mapping:./www")).toMatchObject({ added: 0, removed: 0, changed: 0, before: 12, after: 12 });

    const human = await fledge(["diff", join(root, "a.cpio.gz"), join(root, "b.cpio.gz")], root);
    expect(human.stdout).toMatch(/~ \/bin\/busybox .*8\.0 KiB → 9\.0 KiB \(\+1000 B\) .*busybox \(content, size\)/);
    expect(human.stdout).toMatch(/\+ \/opt\/tools\/jq .*2\.9 KiB .*mapping:\.\/tools/);
    expect(human.stdout).toMatch(/by origin:\n {2}mapping:\.\/tools .*\+3\.4 KiB .*4 added\n {2}busybox .*\+1000 B .*1 changed\n/);
    expect((await fledge(["diff", "--exit-code", join(root, "a.cpio.gz"), join(root, "b.cpio.gz")], root)).code).toBe(1);
    expect((await fledge(["diff", "--exit-code", join(root, "a.cpio.gz"), join(root, "a.cpio.gz")], root)).code).toBe(0);
  });

  it("with no artifact builds the project and compares with the last build", async () => {
    const dir = project("busybox-1.35", `"./www" = "/srv/www"\n`);
    expect((await fledge(["build", "-q"], dir)).code).toBe(0);
    writeFileSync(join(dir, "www", "index.html"), "<h1>changed</h1>\n");
    const r = await fledge(["diff", "--json", "-q"], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).entries).toEqual([{ path: "/srv/www/index.html", change: "changed", origin: "mapping:./www", before: 12, after: 17, what: ["content", "size"] }]);
  });

  it("says when an artifact has no origins record, and a stale record is not used", async () => {
    const dir = project("busybox-1.35", `"./www" = "/srv/www"\n`);
    expect((await fledge(["build", "-q", "-o", join(root, "c.cpio.gz")], dir)).code).toBe(0);
    writeFileSync(join(root, "c.cpio.gz.origins.json"), readFileSync(join(root, "b.cpio.gz.origins.json")));
    const r = await fledge(["inspect", "--sizes", join(root, "c.cpio.gz")], root);
    expect(r.stdout).toMatch(/is for another build \(its sha256 differs\): origins unknown/);
    rmSync(join(root, "c.cpio.gz.origins.json"));
    expect((await fledge(["diff", join(root, "c.cpio.gz"), join(root, "a.cpio.gz")], root)).stdout).toContain("c.cpio.gz.origins.json beside it: origins unknown");
  });
});

describe("fledge inspect --sizes", () => {
  it("shows a du-like tree and the bytes of each origin, also as JSON", async () => {
    const r = await fledge(["inspect", "--sizes", "--json", join(root, "b.cpio.gz")], root);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.tree.find((n: { path: string }) => n.path === "/opt/tools")).toMatchObject({ size: 3500, entries: 3, origin: "mapping:./tools" });
    expect(j.tree[0]).toMatchObject({ path: "/", size: j.total });
    expect(j.origins.map((o: { origin: string }) => o.origin)).toEqual(["busybox", "mapping:./tools", "mapping:./init.sh", "mapping:./www", "skeleton"]);
    const text = (await fledge(["inspect", "--sizes", "--depth", "1", join(root, "b.cpio.gz")], root)).stdout;
    expect(text).toMatch(/3\.4 KiB .* {4}\/opt\/ \(3 entries\)/);
    expect(text).not.toContain("/opt/tools/");
  });
});

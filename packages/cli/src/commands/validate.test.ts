import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { main, type CliIO } from "../index.js";

function fakeIO(cwd: string) {
  const out = { stdout: "", stderr: "" };
  const sink = (k: keyof typeof out) =>
    new Writable({
      write(chunk, _enc, cb) {
        out[k] += String(chunk);
        cb();
      },
    });
  const io: CliIO = { stdout: sink("stdout"), stderr: sink("stderr"), env: {}, cwd };
  return { io, out };
}

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "fledge-validate-"));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const GOOD_MANIFEST = 'name = "app"\n[workload]\nentrypoint = "/usr/bin/app"\nbase_url = "http://127.0.0.1:8000"\n';

describe("fledge validate", () => {
  it("exits 0 and says which init mode the config resolves to", async () => {
    const dir = project({ "fledge.toml": 'version = "1"\n[init]\nnone = true\n[mappings]\n"./app" = "/init"\n', "manifest.toml": GOOD_MANIFEST, app: "#!/bin/sh\n" });
    const { io, out } = fakeIO(dir);
    expect(await main(["validate"], io)).toBe(0);
    expect(out.stdout).toBe("ok fledge.toml: none init mode (your /init is PID 1)\nok manifest.toml\n");
    expect(out.stderr).toBe("");
  });

  it("lists every problem of both files with file:line:column, and exits 1", async () => {
    const dir = project({
      "fledge.toml": 'version = "1"\n\n[agent]\nsource_strategy = "release"\nversion = "latest"\n\n[init]\nnone = true\n\n[mapping]\n"./app" = "/init"\n',
      "manifest.toml": 'name = "app"\n[workload]\nentrypoint = "/usr/bin/app"\n[network]\nmode = "bridged"\nsubnet = "10.0.0.0/24"\n',
    });
    const { io, out } = fakeIO(dir);
    expect(await main(["validate"], io)).toBe(1);
    const errors = out.stderr.split("\n").filter((l) => l.startsWith("error:"));
    expect(errors).toEqual([
      "error: fledge.toml:3:1 agent: [agent] is only used in the default init mode, but the init mode is none (`[init] none = true`): kestrel is not installed in this mode",
      "error: fledge.toml:10:1 mapping: unknown table [mapping]",
      "error: manifest.toml:2:1 workload.base_url: Volant needs the workload's base_url (where it answers HTTP in the guest)",
      "error: manifest.toml:4:1 network: bridged mode with subnet requires gateway or auto_assign",
    ]);
    expect(out.stderr).toContain("    hint: did you mean [mappings]?\n");
    expect(out.stderr).toMatch(/4 problems in 2 files\n$/);
    expect(out.stdout).toBe("");
  });

  const ONE: [string, string, string][] = [
    ["a TOML syntax error", 'version = "1"\nstrategy = initramfs\n', "error: fledge.toml:2:12: TOML syntax error: "],
    ["an unknown key", 'version = "1"\n[mapping]\n"./a" = "/a"\n', "error: fledge.toml:2:1 mapping: unknown table [mapping]\n    hint: did you mean [mappings]?\n1 problem in 1 file\n"],
    ["a wrong type", 'version = "1"\n[init]\nnone = "true"\n', 'error: fledge.toml:3:1 init.none: expected a boolean (true or false), got the string "true"\n1 problem in 1 file\n'],
    [
      "a mode conflict",
      'version = "1"\n[init]\nnone = true\npath = "/sbin/init"\n[mappings]\n"./a" = "/init"\n',
      'error: fledge.toml:2:1 init: `path` and `none = true` are both set: that is two init modes at once, custom (`path = "/sbin/init"`) and none\n    hint: keep `path` for your own init, or `none = true` when a mapping puts your PID 1 at /init — not both\n1 problem in 1 file\n',
    ],
  ];
  it.each(ONE)("%s prints one clear message with file, key path and position", async (_what, toml, expected) => {
    const dir = project({ "fledge.toml": toml, "manifest.toml": GOOD_MANIFEST });
    const { io, out } = fakeIO(dir);
    expect(await main(["validate"], io)).toBe(1);
    expect(out.stderr.split("\n").filter((l) => l.startsWith("error:"))).toHaveLength(1);
    if (expected.endsWith("\n")) expect(out.stderr).toBe(expected);
    else expect(out.stderr.startsWith(expected), out.stderr).toBe(true);
  });

  it("--json gives {ok, problems, warnings} with positions", async () => {
    const dir = project({ "cfg/fledge.toml": 'version = "1"\nstrategy = "initramsf"\n', "cfg/manifest.toml": GOOD_MANIFEST.replace("8000", "8080") });
    const { io, out } = fakeIO(dir);
    expect(await main(["--json", "validate", "-C", "cfg"], io)).toBe(1);
    const r = JSON.parse(out.stdout);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      {
        file: join(dir, "cfg/fledge.toml"),
        keyPath: "strategy",
        message: 'no plugin provides the "initramsf" strategy; on offer: initramfs',
        hint: 'did you mean "initramfs"?',
        line: 2,
        column: 1,
      },
    ]);
    expect(r.warnings).toMatchObject([{ file: join(dir, "cfg/manifest.toml"), keyPath: "workload.base_url", line: 4, message: expect.stringContaining("port 8080") }]);
  });

  it("a TOML syntax error shows a code frame", async () => {
    const dir = project({ "fledge.toml": 'version = "1"\n[agent\n', "manifest.toml": GOOD_MANIFEST });
    const { io, out } = fakeIO(dir);
    expect(await main(["validate"], io)).toBe(1);
    expect(out.stderr).toMatch(/^error: fledge\.toml:2:\d+: TOML syntax error: .*\n {4}1: {2}version = "1"\n {4}2: {2}\[agent\n/m);
  });

  it("-c and -m pick the files; a missing -m file is a problem, a missing default one is a note", async () => {
    const dir = project({ "a/my.toml": 'version = "1"\n[init]\nnone = true\n[mappings]\n"./x" = "/init"\n', "a/x": "#!/bin/sh\n" });
    let t = fakeIO(dir);
    expect(await main(["validate", "-c", "a/my.toml", "-m", "a/nope.toml"], t.io)).toBe(1);
    expect(t.out.stderr).toContain(`error: a/nope.toml: file not found`);
    t = fakeIO(dir);
    // Without manifest.toml, a build uses defaults, and derives the workload from the init mode.
    expect(await main(["validate", "-c", "a/my.toml"], t.io)).toBe(0);
    expect(t.out.stderr).toContain(`note: no manifest.toml at ${join(dir, "a/manifest.toml")}: using name "a", runtime "a", version 0.1.0`);
    expect(t.out.stderr).toContain('note: manifest: workload.entrypoint = ["/init"] from the none init mode');
    expect(t.out.stdout).toContain("ok (no manifest.toml: defaults derived from fledge.toml)");
  });

  it("without manifest.toml in the default mode and two programs mapped into bin directories: valid, with a warning that no manifest.json will be written", async () => {
    const dir = project({
      "two/fledge.toml": 'version = "1"\n[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox_url = "./bb"\n[mappings]\n"./a" = "/usr/bin/a"\n"./b" = "/usr/bin/b"\n',
      "two/kestrel": "",
      "two/bb": "",
      "two/a": "",
      "two/b": "",
    });
    let t = fakeIO(join(dir, "two"));
    expect(await main(["validate"], t.io)).toBe(0);
    expect(t.out.stderr).toContain(
      "warning: fledge.toml:7:1 mappings: no manifest.json will be written (the artifact is still built): there is no manifest.toml to name the program kestrel starts (workload.entrypoint), and 2 mapped files land in a bin directory (/usr/bin/a, /usr/bin/b), so fledge cannot tell which one kestrel should start\n" +
        `    hint: write ${join(dir, "two", "manifest.toml")} with workload.entrypoint (and what fledge would have derived):\n` +
        '          name = "two"\n          \n          [workload]\n          entrypoint = "/usr/bin/a"  # or "/usr/bin/b"\n          base_url = "http://127.0.0.1:8000"\n',
    );
    expect(t.out.stdout).toContain("ok (no manifest.toml: the artifact builds, but no manifest.json is written)");
    t = fakeIO(join(dir, "two"));
    expect(await main(["validate", "--json"], t.io)).toBe(0);
    expect(JSON.parse(t.out.stdout)).toMatchObject({
      ok: true,
      manifestReasons: [{ key: "workload.entrypoint", message: expect.stringContaining("2 mapped files"), fix: expect.stringContaining('entrypoint = "/usr/bin/a"') }],
    });
  });

  it("checks the artifact path fledge build would write without -o: plugin.cpio.gz, or rootfs.img for oci_rootfs", async () => {
    const dir = project({
      "fledge.toml": 'version = "1"\nstrategy = "oci_rootfs"\n[agent]\nsource_strategy = "local"\npath = "./app"\n[source]\nbusybox_url = "./app"\nimage = "oci:./layout:1"\n',
      "manifest.toml": GOOD_MANIFEST,
      app: "#!/bin/sh\n",
      "layout/oci-layout": '{"imageLayoutVersion":"1.0.0"}',
      "rootfs.img/keep": "a directory where the disk would go\n",
      "plugin.cpio.gz/keep": "not in the way of a root disk\n",
    });
    const { io, out } = fakeIO(dir);
    expect(await main(["validate"], io)).toBe(1);
    const errors = out.stderr.split("\n").filter((l) => l.startsWith("error:"));
    expect(errors).toContain("error: rootfs.img: is a directory; fledge writes its artifact only as a regular file, never through or over anything else");
    expect(errors.join("\n")).not.toContain("plugin.cpio.gz");
  });

  it("reports host files the build would need and that are missing", async () => {
    const dir = project({
      "fledge.toml": 'version = "1"\n[agent]\nsource_strategy = "local"\npath = "./kestrel"\n[source]\nbusybox_url = "./bb"\n[mappings]\n"./here" = "/a"\n"./gone" = "/b"\n',
      "manifest.toml": GOOD_MANIFEST,
      here: "x",
    });
    const { io, out } = fakeIO(dir);
    expect(await main(["validate"], io)).toBe(1);
    expect(out.stderr.split("\n").filter((l) => l.startsWith("error:"))).toEqual([
      `error: fledge.toml:4:1 agent.path: ${join(dir, "kestrel")} does not exist`,
      `error: fledge.toml:6:1 source.busybox_url: ${join(dir, "bb")} does not exist`,
      `error: fledge.toml:9:1 mappings."./gone": ${join(dir, "gone")} does not exist`,
    ]);
  });

  it("--base-url is checked as fledge build checks it", async () => {
    const { io, out } = fakeIO(tmpdir());
    expect(await main(["validate", "--base-url", "ftp://x"], io)).toBe(2);
    expect(out.stderr).toContain("--base-url must start with http://");
  });

  it("validates the repository's examples", async () => {
    for (const ex of ["hello", "kestrel-httpd"]) {
      const { io, out } = fakeIO(new URL("../../../../examples/" + ex, import.meta.url).pathname);
      expect(await main(["validate"], io), out.stderr).toBe(0);
    }
  });
});

describe("fledge schema", () => {
  it("prints the JSON Schema of fledge.toml and manifest.toml", async () => {
    for (const which of ["fledge", "manifest"]) {
      const { io, out } = fakeIO(tmpdir());
      expect(await main(["schema", which], io)).toBe(0);
      const s = JSON.parse(out.stdout);
      expect(s.$schema).toBe("http://json-schema.org/draft-07/schema#");
      expect(s.additionalProperties).toBe(false);
      expect(Object.keys(s.properties)).toContain(which === "fledge" ? "mappings" : "workload");
    }
  });

  it("writes it with -o, and wants one known name", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fledge-schema-"));
    const { io } = fakeIO(dir);
    expect(await main(["schema", "manifest", "-o", "m.json"], io)).toBe(0);
    const t = fakeIO(dir);
    expect(await main(["schema", "volant"], t.io)).toBe(2);
    expect(t.out.stderr).toContain('fledge schema needs one of "fledge" or "manifest", got "volant"');
  });
});

import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { InitBinaryError, initBinaryPath, initSourcePath, type InitArch } from "./index.js";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));
const buildScript = join(pkgDir, "scripts", "build.sh");
const ARCHS: InitArch[] = ["x86_64", "aarch64"];
/** ELF e_machine per architecture. */
const MACHINE: Record<InitArch, number> = { x86_64: 62, aarch64: 183 };

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");
const shipped = (arch: InitArch) => existsSync(join(pkgDir, "bin", `init-${arch}`));

function buildInfo(arch: InitArch): Record<string, string> {
  const text = readFileSync(join(pkgDir, "bin", `init-${arch}.buildinfo`), "utf8");
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^(\w+) (.*)$/.exec(line);
    if (m && !line.startsWith("#")) out[m[1]!] = m[2]!; // both groups are mandatory in the pattern
  }
  return out;
}

/** Compiler and musl-dev:<deb> of each architecture's toolchain, as build.sh records them. */
const TOOLCHAIN: Record<InitArch, { gcc: string; deb: string }> = {
  x86_64: { gcc: "x86_64-linux-gnu-gcc", deb: "amd64" },
  aarch64: { gcc: "aarch64-linux-gnu-gcc", deb: "arm64" },
};

/** The toolchain build.sh would record for `arch` here, or undefined when it is not installed. */
function hostToolchain(arch: InitArch): { cc: string; libc: string } | undefined {
  const { gcc, deb } = TOOLCHAIN[arch];
  if (!existsSync(`/usr/lib/${arch}-linux-musl/musl-gcc.specs`)) return undefined;
  const cc = spawnSync(gcc, ["--version"], { encoding: "utf8" });
  if (cc.error || cc.status !== 0) return undefined;
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const musl = spawnSync("dpkg-query", ["-W", "-f", "${Version}", `musl-dev:${deb}`], { encoding: "utf8" });
  return { cc: cc.stdout.split("\n")[0] ?? "", libc: `musl ${musl.status === 0 && musl.stdout ? musl.stdout : "unknown"}` };
}

describe("the shipped init binaries", () => {
  it("ships x86_64", () => {
    expect(shipped("x86_64")).toBe(true);
  });

  for (const arch of ARCHS) {
    describe.runIf(shipped(arch))(`init-${arch}`, () => {
      const path = () => initBinaryPath(arch);

      it("is a static, stripped ELF for its architecture, small and executable", () => {
        const buf = readFileSync(path());
        expect(buf.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
        expect(buf[4]).toBe(2); // 64-bit
        expect(buf.readUInt16LE(18)).toBe(MACHINE[arch]);
        // No PT_INTERP: statically linked.
        const phoff = Number(buf.readBigUInt64LE(32));
        const phentsize = buf.readUInt16LE(54);
        const phnum = buf.readUInt16LE(56);
        const types = Array.from({ length: phnum }, (_, i) => buf.readUInt32LE(phoff + i * phentsize));
        expect(types).not.toContain(3);
        // Stripped: no .symtab section.
        const shoff = Number(buf.readBigUInt64LE(40));
        const shentsize = buf.readUInt16LE(58);
        const shnum = buf.readUInt16LE(60);
        const sectionTypes = Array.from({ length: shnum }, (_, i) => buf.readUInt32LE(shoff + i * shentsize + 4));
        expect(sectionTypes).not.toContain(2); // SHT_SYMTAB
        expect(buf.length).toBeLessThan(64 * 1024);
        expect(statSync(path()).mode & 0o111).toBe(0o111);
      });

      it("matches the sha256 and size recorded in its .buildinfo", () => {
        const info = buildInfo(arch);
        expect(info.arch).toBe(arch);
        expect(sha256(path())).toBe(info.sha256);
        expect(statSync(path()).size).toBe(Number(info.size));
      });
    });
  }

  it("fails clearly for an architecture without a binary", () => {
    const arch = "riscv64" as InitArch;
    expect(() => initBinaryPath(arch)).toThrow(InitBinaryError);
    expect(() => initBinaryPath(arch)).toThrow(/no prebuilt binary for riscv64 .*choose another \[output\] arch/);
  });

  it.runIf(process.arch === "x64")("refuses to act when it is not PID 1 (safe to run by hand)", () => {
    const r = spawnSync(initBinaryPath("x86_64"), [], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("fledge-init: not running as PID 1 (it is the /init of a fledge initramfs); doing nothing\n");
  });
});

describe("init.c", () => {
  const src = readFileSync(initSourcePath, "utf8");
  it("uses libc wrappers only: no raw syscall numbers", () => {
    expect(src).not.toMatch(/\bsyscall\s*\(|__NR_|SYS_\w+/);
  });
  it("never waits for block devices", () => {
    expect(src).not.toMatch(/\/dev\/vd|\/dev\/sd|sleep\s*\(|usleep|nanosleep/);
  });
});

const tmps: string[] = [];
afterAll(() => {
  for (const t of tmps) rmSync(t, { recursive: true, force: true });
});

describe.each(ARCHS)("reproducible rebuild of init-%s", (arch) => {
  const toolchain = hostToolchain(arch);
  const need = arch === "x86_64" ? "musl-tools" : "gcc-aarch64-linux-gnu and musl-dev:arm64";

  it.skipIf(!toolchain)(
    toolchain ? "a rebuild from a copy of the package elsewhere gives the committed bytes (same toolchain) or another rebuild's" : `SKIPPED: the rebuild needs Debian ${need}, which is not installed here`,
    () => {
      // A copy at another path, with another TZ and locale, so none of them can leak into the bytes.
      const copy = mkdtempSync(join(tmpdir(), "fledge-cinit-copy-"));
      tmps.push(copy);
      cpSync(join(pkgDir, "src", "init.c"), join(copy, "src", "init.c"));
      cpSync(buildScript, join(copy, "scripts", "build.sh"));
      const outA = join(copy, "out");
      execFileSync("sh", [join(copy, "scripts", "build.sh"), "--out", outA, arch], { stdio: "pipe", env: { ...process.env, TZ: "Pacific/Kiritimati", SOURCE_DATE_EPOCH: "" } });
      const outB = mkdtempSync(join(tmpdir(), "fledge-cinit-out-"));
      tmps.push(outB);
      execFileSync("sh", [buildScript, "--out", outB, arch], { stdio: "pipe", env: { ...process.env, LC_ALL: "de_DE.UTF-8" } });
      const a = sha256(join(outA, `init-${arch}`));
      expect(sha256(join(outB, `init-${arch}`))).toBe(a);

      if (!shipped(arch)) return;
      const info = buildInfo(arch);
      if (info.cc === toolchain!.cc && info.libc === toolchain!.libc) {
        expect(a).toBe(info.sha256);
      } else {
        console.warn(`cinit: the ${arch} toolchain here (${toolchain!.cc}, ${toolchain!.libc}) is not the committed binary's (${info.cc}, ${info.libc}): compared two rebuilds only`);
      }
    },
    60_000,
  );
});

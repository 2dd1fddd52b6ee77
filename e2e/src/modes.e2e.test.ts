import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { bootInitramfs, hostBusybox, type BootResult } from "./qemu.js";

/**
 * Every init mode of docs/architecture.md ("Init modes"), built with the CLI from e2e/fixtures/modes/<mode> and booted
 * in Debian's kernel. Each payload prints "FLEDGE-MODE …" lines on the console and powers off.
 */
const fixtures = fileURLToPath(new URL("../fixtures/modes/", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "fledge-e2e-modes-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

async function buildFixture(mode: string, env?: NodeJS.ProcessEnv): Promise<string> {
  hostBusybox();
  const artifact = join(out, `${mode}-${Math.random().toString(36).slice(2)}.cpio.gz`);
  const r = await fledge(["build", "-C", join(fixtures, mode), "-o", artifact, "--manifest-output", `${artifact}.manifest.json`, "--cache-dir", join(out, "cache")], {
    cwd: out,
    env,
  });
  expect(r.stderr, r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  return artifact;
}

/** The payload's report lines, without the prefix. */
function report(boot: BootResult): string[] {
  return [...boot.serial.matchAll(/^FLEDGE-MODE (.*)$/gm)].map((m) => m[1]!.trimEnd());
}

function mounts(lines: string[]): string[] {
  return lines.filter((l) => l.startsWith("mount ")).map((l) => l.slice("mount ".length));
}

function expectCleanPowerOff(boot: BootResult): void {
  expect(boot.serial).toContain("Run /init as init process");
  expect(boot.panicked).toBe(false);
  expect(boot.timedOut).toBe(false);
  expect(boot.exitedByItself).toBe(true);
  expect(boot.serial).toContain("reboot: Power down");
}

const FHS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

describe("init modes boot in qemu", () => {
  it("default: fledge's C init mounts the filesystems and execs the (stand-in) kestrel as PID 1", async () => {
    // A variable and arguments for init on the kernel command line reach the payload.
    const boot = await bootInitramfs(await buildFixture("default"), { append: "FLEDGE_E2E_VAR=from-kernel -- one two" });
    expectCleanPowerOff(boot);
    const lines = report(boot);
    expect(lines[0]).toBe("start payload=kestrel pid=1");
    expect(lines).toContain("kernel-env=from-kernel args=one two");
    expect(mounts(lines)).toEqual(expect.arrayContaining(["/dev devtmpfs", "/proc proc", "/sys sysfs", "/tmp tmpfs", "/run tmpfs"]));
    expect(lines).toContain("tmp=1777 run=755");
    expect(lines).toContain(`env PATH=${FHS_PATH} HOME=/ TERM=linux`);
    expect(lines).toContain("done");
    expect(boot.serial).not.toContain("fledge-init:");
  });

  it("custom with a host file (the seed's Mode 2 config): the user's script is PID 1, without kestrel", async () => {
    const boot = await bootInitramfs(await buildFixture("custom-host"));
    expectCleanPowerOff(boot);
    const lines = report(boot);
    expect(lines[0]).toBe("start payload=my-init pid=1");
    expect(lines).toContain("volant_init=absent");
    expect(lines).toContain("kestrel=absent");
    expect(lines).toContainEqual(expect.stringMatching(/^myapp ran as pid \d+ with parent 1$/));
    expect(lines).toContain("done");
  });

  it("custom with an image path: the C init mounts the filesystems, then the user's script runs as PID 1", async () => {
    const boot = await bootInitramfs(await buildFixture("custom-image"));
    expectCleanPowerOff(boot);
    const lines = report(boot);
    expect(lines[0]).toBe("start payload=my-init.sh pid=1");
    expect(mounts(lines)).toEqual(expect.arrayContaining(["/dev devtmpfs", "/proc proc", "/sys sysfs", "/tmp tmpfs", "/run tmpfs"]));
    expect(lines).toContain("tmp=1777 run=755");
    expect(lines).toContain(`env PATH=${FHS_PATH} HOME=/ TERM=linux`);
    expect(lines).toContain("volant_init=/usr/local/bin/my-init.sh");
    expect(lines).toContain("done");
  });

  it("none (the seed's Mode 3 config): the user's /init is PID 1 and nothing was mounted for it", async () => {
    const boot = await bootInitramfs(await buildFixture("none"));
    expectCleanPowerOff(boot);
    const lines = report(boot);
    expect(lines[0]).toBe("start payload=my-supervisor pid=1");
    // Only the rootfs and the proc the script mounted itself.
    expect(mounts(lines)).toEqual(["/ rootfs", "/proc proc"]);
    expect(lines).toContain("done");
  });

  it("failure: with /bin/kestrel removed by a plugin, the C init prints why and powers off without a panic", async () => {
    const boot = await bootInitramfs(await buildFixture("failure"), { timeoutMs: 120_000 });
    expectCleanPowerOff(boot);
    expect(boot.serial).toContain("fledge-init: exec /bin/kestrel: No such file or directory");
    expect(report(boot)).toEqual([]);
  });
});

describe("building never needs a C compiler", () => {
  const COMPILERS = ["gcc", "cc", "c99", "musl-gcc", "x86_64-linux-gnu-gcc", "clang"];

  it("fledge build gives the same bytes with every directory holding gcc, cc or musl-gcc removed from PATH", async () => {
    const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
    const stripped = dirs.filter((d) => !COMPILERS.some((c) => existsSync(join(d, c))));
    const withCompiler = await buildFixture("default");
    const without = await buildFixture("default", { PATH: stripped.join(delimiter) });
    const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
    expect(sha(without)).toBe(sha(withCompiler));
  });
});

import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fledge } from "./cli.js";
import { findKernel, hostBusybox } from "./qemu.js";

/**
 * Boot checks on the hello example: booted headless with Debian's kernel before the build keeps
 * the artifact. This machine has no KVM and is shared, so a budget that must pass is generous
 * (10 minutes) and one that must fail is absurd (1 ms, 0.01 MiB).
 */
const examples = fileURLToPath(new URL("../../examples/", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "fledge-e2e-bootcheck-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const env = () => ({ FLEDGE_MIRRORS: `https://busybox.net/downloads/binaries/1.35.0-x86_64-linux-musl/=file://${dirname(hostBusybox())}/` });

function hello(name: string, check: string): string {
  const dir = join(work, name);
  cpSync(join(examples, "hello"), dir, { recursive: true });
  rmSync(join(dir, "fledge.lock"), { force: true });
  writeFileSync(join(dir, "fledge.toml"), readFileSync(join(dir, "fledge.toml"), "utf8") + `\n[run]\nkernel = ${JSON.stringify(findKernel())}\n\n[check]\n${check}`);
  return dir;
}

describe("boot checks", () => {
  it("passes within budget on the hello example and puts kernel → /init → healthy times and peak memory in --json", async () => {
    const dir = hello("pass", "boot_budget_ms = 600000\nsize_budget_mb = 64\n");
    const r = await fledge(["build", "--json", "--cache-dir", join(work, "cache")], { cwd: dir, env: env() });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    const b = result.reports["@fledge/plugin-bootcheck"];
    expect(b.readyBy).toEqual({ kind: "health", url: "http://127.0.0.1:8000/", status: 200 });
    expect(b.kernelToInitMs).toBeGreaterThan(0);
    expect(b.initToReadyMs).toBeGreaterThanOrEqual(0);
    expect(b.kernelToReadyMs).toBe(b.kernelToInitMs + b.initToReadyMs);
    expect(Math.abs(b.totalMs - (b.qemuToInitMs + b.initToReadyMs))).toBeLessThanOrEqual(1);
    expect(b.peakGuestMemoryKb).toBeGreaterThan(1024);
    expect(b.peakGuestMemoryKb).toBeLessThanOrEqual(128 * 1024);
    expect(b.kernel).toMatchObject({ path: findKernel(), volant: false });
    expect(b.budgets).toEqual({ boot_budget_ms: 600000, size_budget_mb: 64 });
    expect(existsSync(join(dir, "plugin.cpio.gz"))).toBe(true);
  });

  it("prints the times; a too-small boot budget fails the build and leaves nothing under the output names", async () => {
    const dir = hello("slow", "boot_budget_ms = 1\n");
    const r = await fledge(["build", "--cache-dir", join(work, "cache")], { cwd: dir, env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/boot check: healthy .* \d+ ms after the VM started: kernel → \/init \d+ ms \(guest clock\), \/init → healthy \d+ ms/);
    expect(r.stderr).toMatch(/over the boot budget of 1 ms \(\[check\] boot_budget_ms\)/);
    expect(readdirSync(dir).filter((f) => /cpio|manifest\.json|origins|fledge-tmp/.test(f))).toEqual([]);
  });

  it("a too-small size budget fails before booting, leaving nothing behind", async () => {
    const dir = hello("big", "size_budget_mb = 0.01\n");
    const r = await fledge(["build", "--cache-dir", join(work, "cache")], { cwd: dir, env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the artifact is \d+\.\d\d MiB, over the size budget of 0\.01 MiB/);
    expect(r.stderr).not.toContain("booting");
    expect(readdirSync(dir).filter((f) => /cpio|manifest\.json|origins|fledge-tmp/.test(f))).toEqual([]);
  });
});

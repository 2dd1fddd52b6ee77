import type { Builder, LogEvent, ProgressInfo } from "@fledge/core";
import type { CliIO } from "./io.js";
import { colors } from "./io.js";

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Formats one progress line: `fetch busybox 1.2 MiB / 1.9 MiB (63%) 4.5 MiB/s`. */
export function formatProgress(p: ProgressInfo): string {
  if (p.kind !== "fetch") return `${p.kind} ${p.label} ${p.current}${p.total ? `/${p.total}` : ""}`;
  const frac = p.total ? Math.min(1, p.current / p.total) : undefined;
  const pct = frac !== undefined ? ` (${Math.floor(frac * 100)}%)` : "";
  const bar = frac !== undefined ? ` [${"#".repeat(Math.round(frac * 20)).padEnd(20, "-")}]` : "";
  const rate = p.rate && p.rate > 0 ? ` ${human(Math.round(p.rate))}/s` : "";
  return `fetch ${p.label}${bar} ${human(p.current)}${p.total ? ` / ${human(p.total)}` : ""}${pct}${rate}`;
}

/**
 * A one-line live display on a TTY (redrawn at most every 80 ms, cleared before other
 * output); nothing at all when stderr is not a TTY, in CI, with --json or --quiet.
 */
export function liveLine(io: CliIO, opts: { quiet: boolean; json: boolean }) {
  const c = colors(io, io.stderr);
  const live = !!io.stderr.isTTY && !io.env.CI && !opts.json && !opts.quiet;
  let lineOpen = false;
  let last = 0;
  const clear = () => {
    if (lineOpen) {
      io.stderr.write("\r\x1b[2K");
      lineOpen = false;
    }
  };
  // Downloads run concurrently (busybox and kestrel): one line shows every active one.
  const active = new Map<string, ProgressInfo>();
  const update = (p: ProgressInfo) => {
    if (!live) return;
    const key = `${p.kind}:${p.label}`;
    if (p.done) {
      active.delete(key);
      if (!active.size) return clear();
    } else active.set(key, p);
    const now = Date.now();
    if (now - last < 80 && p.current !== p.total && !p.done) return;
    last = now;
    let text = [...active.values()].map(formatProgress).join("  ·  ");
    const cols = io.stderr.columns ?? 80;
    if (text.length > cols - 1) text = text.slice(0, cols - 2) + "…";
    io.stderr.write(`\r\x1b[2K${text.replace(/^(fetch|\S+)/, (k) => c.dim(k))}`);
    lineOpen = true;
  };
  return { live, update, clear };
}

/**
 * Observes a build through its hooks: logs to stderr, a one-line progress display on a TTY
 * (nothing at all when not a TTY or in CI), stage timings with --verbose.
 */
export function attachReporter(builder: Builder, io: CliIO, opts: { verbose: boolean; quiet: boolean; json: boolean }): void {
  const c = colors(io, io.stderr);
  const line = liveLine(io, opts);
  const clear = line.clear;
  builder.hooks.log.tap("fledge-cli:reporter", (e: LogEvent) => {
    if (e.level === "debug" && !opts.verbose) return;
    if (e.level === "info" && (opts.quiet || opts.json) && !opts.verbose) return;
    clear();
    const tag = e.level === "warn" ? c.yellow("warning") : e.level === "info" ? c.cyan("note") : c.dim("debug");
    io.stderr.write(`${tag}: ${e.message}\n`);
  });
  builder.hooks.progress.tap("fledge-cli:reporter", (p: ProgressInfo) => line.update(p));
  if (opts.verbose) {
    for (const name of ["check", "beforeBuild", "inputs", "skeleton", "overlay", "busybox", "init", "agent", "mappings", "beforeArchive", "archive", "manifest", "afterBuild"] as const) {
      let started = 0;
      const report = () => {
        clear();
        io.stderr.write(c.dim(`stage ${name}: ${(performance.now() - started).toFixed(1)} ms\n`));
      };
      (builder.hooks[name] as unknown as { intercept(i: object): void }).intercept({
        call: () => {
          started = performance.now();
        },
        done: () => report(),
        result: () => report(),
      });
    }
  }
  builder.hooks.done.tap("fledge-cli:reporter", () => clear());
  builder.hooks.failed.tap("fledge-cli:reporter", () => clear());
}

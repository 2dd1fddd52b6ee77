import type { Builder, LogEvent, ProgressInfo } from "@fledge/core";
import type { CliIO } from "./io.js";
import { colors } from "./io.js";

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Observes a build through its hooks: logs to stderr, a one-line progress display on a TTY
 * (nothing at all when not a TTY or in CI), stage timings with --verbose.
 */
export function attachReporter(builder: Builder, io: CliIO, opts: { verbose: boolean; quiet: boolean; json: boolean }): void {
  const c = colors(io, io.stderr);
  const live = !!io.stderr.isTTY && !io.env.CI && !opts.json && !opts.quiet;
  let lineOpen = false;
  const clear = () => {
    if (lineOpen) {
      io.stderr.write("\r\x1b[2K");
      lineOpen = false;
    }
  };
  builder.hooks.log.tap("fledge-cli:reporter", (e: LogEvent) => {
    if (e.level === "debug" && !opts.verbose) return;
    if (e.level === "info" && (opts.quiet || opts.json) && !opts.verbose) return;
    clear();
    const tag = e.level === "warn" ? c.yellow("warning") : e.level === "info" ? c.cyan("note") : c.dim("debug");
    io.stderr.write(`${tag}: ${e.message}\n`);
  });
  let last = 0;
  builder.hooks.progress.tap("fledge-cli:reporter", (p: ProgressInfo) => {
    if (!live) return;
    const now = Date.now();
    if (now - last < 80 && p.current !== p.total) return;
    last = now;
    const amount = p.kind === "fetch" ? `${human(p.current)}${p.total ? ` / ${human(p.total)}` : ""}` : `${p.current}${p.total ? `/${p.total}` : ""}`;
    io.stderr.write(`\r\x1b[2K${c.dim(`${p.kind}`)} ${p.label} ${amount}`);
    lineOpen = true;
  });
  if (opts.verbose) {
    for (const name of ["beforeBuild", "skeleton", "overlay", "busybox", "init", "agent", "mappings", "beforeArchive", "archive", "manifest", "afterBuild"] as const) {
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

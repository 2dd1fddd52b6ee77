import type { CliIO } from "./io.js";
import { colors } from "./io.js";

interface ErrorLike {
  name?: string;
  code?: string;
  message: string;
  hint?: string;
  issues?: { file: string; keyPath: string; message: string; hint?: string; line?: number; column?: number; codeFrame?: string }[];
  hook?: string;
  plugin?: string;
  kept?: string[];
}

/** The JSON shape of an error for `--json`. */
export function errorJson(err: unknown): Record<string, unknown> {
  const e = err as ErrorLike;
  return {
    name: e?.name ?? "Error",
    code: e?.code ?? "FLEDGE_UNKNOWN",
    message: e?.message ?? String(err),
    ...(e?.hint ? { hint: e.hint } : {}),
    ...(e?.issues ? { issues: e.issues } : {}),
    ...(e?.hook ? { hook: e.hook, plugin: e.plugin } : {}),
    ...(e?.kept ? { kept: e.kept } : {}),
  };
}

/** Prints an error for people: what, where, how to fix. */
export function printError(io: CliIO, err: unknown, verbose: boolean): void {
  const c = colors(io, io.stderr);
  const e = err as ErrorLike;
  if (e?.issues?.length) {
    const n = e.issues.length;
    const files = [...new Set(e.issues.map((i) => i.file))];
    io.stderr.write(`${c.red("error")}: ${n === 1 ? "1 problem" : `${n} problems`} in ${files.length === 1 ? files[0] : `${files.length} files`}\n`);
    for (const i of e.issues) {
      const where = i.line ? `${i.file}:${i.line}:${i.column ?? 1}` : i.file;
      io.stderr.write(`  ${c.bold(where)}${i.keyPath ? ` ${c.cyan(i.keyPath)}` : ""}: ${i.message}\n`);
      if (i.codeFrame) io.stderr.write(i.codeFrame.replace(/^/gm, "    ") + "\n");
      if (i.hint) io.stderr.write(`    ${c.dim("hint:")} ${i.hint}\n`);
    }
    return;
  }
  io.stderr.write(`${c.red("error")}: ${e?.message ?? String(err)}\n`);
  if (e?.hint) io.stderr.write(`  ${c.dim("hint:")} ${e.hint}\n`);
  if (e?.hook && verbose) io.stderr.write(`  ${c.dim(`(in hooks.${e.hook}, plugin ${e.plugin})`)}\n`);
  if (verbose && err instanceof Error && err.stack) io.stderr.write(c.dim(err.stack) + "\n");
}

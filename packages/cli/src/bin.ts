#!/usr/bin/env node
import { unsupportedNode } from "./node-check.js";

/** Anything that escapes every catch: a bug in fledge or a dependency, never a user's mistake. */
function internalError(err: unknown): never {
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  try {
    if (process.argv.includes("--json")) {
      const e = err as { name?: string; message?: string };
      process.stdout.write(JSON.stringify({ ok: false, error: { name: e?.name ?? "Error", code: "FLEDGE_INTERNAL", message: e?.message ?? String(err), stack: text } }, null, 2) + "\n");
    }
    process.stderr.write(`fledge: internal error (a bug in fledge or a dependency, not in your configuration):\n${text}\n` + `  Please report it, with the command you ran and the output above.\n`);
  } finally {
    process.exit(70);
  }
}

process.on("uncaughtException", internalError);
process.on("unhandledRejection", internalError);

const tooOld = unsupportedNode(process.versions.node, process.execPath);
if (tooOld) {
  process.stderr.write(`fledge: ${tooOld}\n`);
  process.exit(1);
}

// `fledge inspect … | head`: a reader that closes the pipe early is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}

// No top-level await: the one-file executable runs this as a CommonJS bundle.
void import("./index.js").then(async ({ main }) => {
  process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: () => process.stdin, env: process.env, cwd: process.cwd() });
});

import type { ConfigIssue } from "@fledge/config";

/**
 * Every error fledge reports carries a `code` of the form `FLEDGE_<WHAT>` (see
 * docs/plugins.md, "Errors"). Errors are recognised by `name`/`code`, never by `instanceof`
 * alone: a plugin may carry its own copy of @fledge/core.
 */
export class FledgeError extends Error {
  override name = "FledgeError";
  readonly code: string;
  /** How to fix it, when we can tell. */
  readonly hint?: string;
  constructor(code: string, message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.hint = options?.hint;
  }
}

/** A failure inside a plugin (a tap, its `apply()`, its constructor), carrying the hook's and the plugin's name. */
export class PluginError extends FledgeError {
  override name = "PluginError";
  /** `hooks.<hook>` the failing tap was on, or `apply` / `load` for the plugin itself. */
  readonly hook: string;
  readonly plugin: string;
  constructor(hook: string, plugin: string, cause: unknown, options?: { message?: string }) {
    const inner = cause instanceof Error ? cause.message : String(cause);
    const builtin = plugin.startsWith("fledge:");
    const where = hook === "apply" ? "in apply()" : `in hooks.${hook}`;
    super("FLEDGE_PLUGIN", options?.message ?? (builtin ? inner : `plugin "${plugin}" failed ${where}: ${inner}`), {
      cause,
      hint: (cause as { hint?: string })?.hint,
    });
    this.hook = hook;
    this.plugin = plugin;
  }
}

/**
 * Problems found before any work is done (by `preflight()`: both config files, the plugins,
 * the output paths), each with its file, key path and, where it is written, line and column.
 */
export class CheckError extends FledgeError {
  override name = "ConfigError";
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super("FLEDGE_CONFIG", issues.map(formatIssueLine).join("\n"));
    this.issues = issues;
  }
}

function formatIssueLine(i: ConfigIssue): string {
  const where = i.line ? `${i.file}:${i.line}:${i.column ?? 1}` : i.file;
  return `${where}:${i.keyPath ? ` ${i.keyPath}:` : ""} ${i.message}${i.hint ? `\n  hint: ${i.hint}` : ""}`;
}

export function isFledgeError(e: unknown): e is FledgeError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "string";
}

/** The innermost cause of a PluginError chain (for exit-code decisions). */
export function rootCause(e: unknown): unknown {
  let cur = e;
  while (cur instanceof Error && cur.name === "PluginError" && cur.cause) cur = cur.cause;
  return cur;
}

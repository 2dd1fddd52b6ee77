/**
 * Errors are recognised by `name`/`code`, never by `instanceof` alone: a plugin may carry its
 * own copy of @fledge/core.
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

/** A failure inside a tap, carrying the hook's and the plugin's name. */
export class PluginError extends FledgeError {
  override name = "PluginError";
  readonly hook: string;
  readonly plugin: string;
  constructor(hook: string, plugin: string, cause: unknown) {
    const inner = cause instanceof Error ? cause.message : String(cause);
    const builtin = plugin.startsWith("fledge:");
    super("FLEDGE_PLUGIN", builtin ? inner : `plugin "${plugin}" failed in hooks.${hook}: ${inner}`, {
      cause,
      hint: (cause as { hint?: string })?.hint,
    });
    this.hook = hook;
    this.plugin = plugin;
  }
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

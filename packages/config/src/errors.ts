/** One problem found in a config file. */
export interface ConfigIssue {
  /** The file the problem is in. */
  file: string;
  /** Dotted key path, e.g. `agent.version`; empty for the whole document. */
  keyPath: string;
  /** What is wrong. */
  message: string;
  /** How to fix it, when we can tell. */
  hint?: string;
  /** 1-based position, when known (TOML syntax errors, located keys). */
  line?: number;
  column?: number;
  /** A few lines of the file around the position, for syntax errors. */
  codeFrame?: string;
}

/** Raised when a config file cannot be read, parsed or validated. Carries every problem found. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly code = "FLEDGE_CONFIG";
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join("\n"));
    this.issues = issues;
  }
}

export function formatIssue(i: ConfigIssue): string {
  const where = i.line ? `${i.file}:${i.line}:${i.column ?? 1}` : i.file;
  const key = i.keyPath ? ` ${i.keyPath}:` : "";
  let s = `${where}:${key} ${i.message}`;
  if (i.hint) s += `\n  hint: ${i.hint.replace(/\n/g, "\n        ")}`;
  if (i.codeFrame) s += `\n${i.codeFrame}`;
  return s;
}

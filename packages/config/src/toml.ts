import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { ConfigError } from "./errors.js";

/** Reads and parses a TOML file; missing files and syntax errors become ConfigErrors. */
export async function readToml(file: string): Promise<{ data: Record<string, unknown>; text: string }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const message =
      e.code === "ENOENT" ? "file not found" : e.code === "EISDIR" ? "is a directory, expected a TOML file" : `cannot read: ${e.message}`;
    throw new ConfigError([{ file, keyPath: "", message, hint: e.code === "ENOENT" ? "pass the right path with -c/-m, or run fledge in the directory that holds it" : undefined }]);
  }
  return { data: parseToml(text, file), text };
}

export function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new ConfigError([
        { file, keyPath: "", message: `TOML syntax error: ${first}`, line: err.line, column: err.column, codeFrame: err.codeblock },
      ]);
    }
    throw err;
  }
}

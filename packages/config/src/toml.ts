import { readRegularFile } from "@fledge/safe-fs";
import { parse, TomlError } from "smol-toml";
import { ConfigError } from "./errors.js";

/** Config files larger than this are refused (fledge.toml and manifest.toml are a few KB). */
export const MAX_TOML_BYTES = 1024 * 1024;
/** Tables, arrays and inline tables nested deeper than this are refused (fledge needs at most 5). */
export const MAX_TOML_DEPTH = 32;

/** Drops a UTF-8 byte order mark, which some Windows editors write at the start of a file. */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Reads and parses a TOML file; missing files, FIFOs, devices, huge files and syntax errors
 * become ConfigErrors. A FIFO, socket or device is refused before it is opened, so `-c` naming
 * one can never hang the build.
 */
export async function readToml(file: string): Promise<{ data: Record<string, unknown>; text: string }> {
  const text = await readTomlText(file);
  return { data: parseToml(text, file), text };
}

/** The text of a config file (BOM dropped), read as `readToml` does; problems are ConfigErrors. */
export async function readTomlText(file: string): Promise<string> {
  let text: string;
  try {
    const buf = await readRegularFile(file, { maxBytes: MAX_TOML_BYTES });
    text = buf.toString("utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const message =
      e.code === "ENOENT"
        ? "file not found"
        : e.code === "EISDIR"
          ? "is a directory, expected a TOML file"
          : e.code === "ESPECIAL"
            ? `is ${/ is (a .*), not a regular file$/.exec(e.message)?.[1] ?? "not a regular file"}, not a regular file: fledge reads config only from regular files`
            : e.code === "ETOOBIG"
              ? `is larger than ${MAX_TOML_BYTES / 1024} KiB; a fledge config is a few KB`
              : `cannot read: ${e.message}`;
    throw new ConfigError([
      {
        file,
        keyPath: "",
        message,
        hint: e.code === "ENOENT" ? "pass the right path with -c/-m, or run fledge in the directory that holds it" : e.code === "ESPECIAL" ? "pass the path of a regular TOML file with -c/-m" : undefined,
      },
    ]);
  }
  return stripBom(text);
}

/** The first key path nested deeper than `max` (tables, arrays), found without recursion. */
function tooDeep(data: unknown, max: number): string[] | undefined {
  const stack: { v: unknown; path: string[] }[] = [{ v: data, path: [] }];
  while (stack.length) {
    const { v, path } = stack.pop()!;
    if (path.length > max) return path;
    if (v && typeof v === "object" && !(v instanceof Date)) {
      for (const [k, c] of Object.entries(v)) if (c && typeof c === "object") stack.push({ v: c, path: [...path, Array.isArray(v) ? `[${k}]` : k] });
    }
  }
  return undefined;
}

export function parseToml(text: string, file: string): Record<string, unknown> {
  text = stripBom(text);
  let data: Record<string, unknown>;
  try {
    data = parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new ConfigError([{ file, keyPath: "", message: `TOML syntax error: ${first}`, line: err.line, column: err.column, codeFrame: err.codeblock }]);
    }
    if (err instanceof RangeError) throw new ConfigError([{ file, keyPath: "", message: `is nested too deeply to read (${err.message})`, hint: `fledge configs nest tables at most a few levels deep` }]);
    throw err;
  }
  const deep = tooDeep(data, MAX_TOML_DEPTH);
  if (deep) {
    const shown = deep.slice(0, 4).join(".").replace(/\.\[/g, "[");
    throw new ConfigError([
      {
        file,
        keyPath: shown + "…",
        message: `tables or arrays are nested more than ${MAX_TOML_DEPTH} levels deep; fledge refuses such a file rather than spend unbounded time and memory on it`,
        hint: "fledge.toml and manifest.toml nest tables at most a few levels deep: check the table headers and dotted keys",
      },
    ]);
  }
  return data;
}

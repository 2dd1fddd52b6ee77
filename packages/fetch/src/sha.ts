import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { FetchError } from "./errors.js";

/** Normalises `sha256:<hex>` or bare hex (any case) to lowercase hex; throws on anything else. */
export function normalizeSha256(s: string): string {
  const hex = s
    .trim()
    .replace(/^sha256:/i, "")
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new FetchError("FLEDGE_INPUT", "", `not a sha256: "${s}"`, { hint: "write sha256:<64 hex digits> or the 64 hex digits alone" });
  return hex;
}

/** sha256 and size of a file, streamed. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

/**
 * Parses `sha256sum` output (`<hex>  <name>` or `<hex> *<name>`, one per line, `#` comments
 * and blank lines ignored) into name → lowercase hex. A leading `./` on names is dropped.
 */
export function parseChecksums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([0-9a-fA-F]{64})\s+\*?(.+)$/.exec(line);
    if (!m) continue;
    out.set(m[2]!.trim().replace(/^\.\//, ""), m[1]!.toLowerCase());
  }
  return out;
}

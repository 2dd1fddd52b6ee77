import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./io.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** What parseCommand returns: each option's value (string or boolean, absent when not given). */
export interface ParsedCommand<O extends Options> {
  values: { [K in keyof O]?: O[K]["type"] extends "boolean" ? boolean : string } & { help?: boolean };
  positionals: string[];
}

/**
 * Parses a command's arguments strictly (every command also takes -h/--help). A bad flag is a
 * usage error (exit 2) that points at the command's help.
 */
export function parseCommand<const O extends Options>(command: string, argv: string[], options: O, opts: { positionals?: boolean } = {}): ParsedCommand<O> {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: opts.positionals ?? false, strict: true });
    return r as unknown as ParsedCommand<O>;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nRun "fledge ${command} --help" for usage.`);
  }
}

/** `--base-url` must be something Volant's validator accepts as an initramfs URL prefix. */
export function checkBaseUrl(url: string | undefined): void {
  if (url !== undefined && !/^(https?|file):\/\//.test(url) && !url.startsWith("/")) throw new UsageError(`--base-url must start with http://, https://, file:// or /, got "${url}"`);
}

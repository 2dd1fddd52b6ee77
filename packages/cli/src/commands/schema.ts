import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { jsonSchemaText } from "@fledge/config";
import { UsageError, type CliIO } from "../io.js";
import type { GlobalFlags } from "../index.js";

export const help = `fledge schema — print the JSON Schema of fledge.toml or manifest.toml

Usage: fledge schema fledge|manifest [-o <file>]

The schema is generated from the same definitions fledge validates with. Point your editor
at it to get completion and checks while you type:
  taplo / Even Better TOML:  a first line "#:schema ./fledge.schema.json"
  any TOML file:             $schema = "./fledge.schema.json"

Options:
  -o, --output <file>   write it to <file> instead of stdout
  -h, --help            show this help
`;

export async function run(argv: string[], io: CliIO, _flags: GlobalFlags): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { output: { type: "string", short: "o" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nRun "fledge schema --help" for usage.`);
  }
  if (values.help) {
    io.stdout.write(help);
    return 0;
  }
  const which = positionals[0];
  if (positionals.length !== 1 || (which !== "fledge" && which !== "manifest"))
    throw new UsageError(`fledge schema needs one of "fledge" or "manifest"${which ? `, got ${positionals.map((p) => `"${p}"`).join(" ")}` : ""}\nRun "fledge schema --help" for usage.`);
  const text = jsonSchemaText(which);
  if (values.output) await writeFile(resolve(io.cwd, values.output), text);
  else io.stdout.write(text);
  return 0;
}

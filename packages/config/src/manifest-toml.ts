import { basename, dirname, resolve } from "node:path";
import { z } from "zod";
import { ConfigError, type ConfigIssue } from "./errors.js";
import { parseToml, readToml, stripBom } from "./toml.js";
import { zodIssues } from "./zod-issues.js";
import { FledgeTomlInput } from "./schema.js";
import { salvage } from "./shape.js";
import { placeIssues } from "./place.js";

const nonEmpty = z.string().min(1, "must not be empty");
const port = z.number().int().min(1, "must be a port number, 1–65535").max(65535, "must be a port number, 1–65535");
const stringMap = z.record(z.string(), z.string());

const CloudInitDoc = z.union([
  z.string().describe('Inline document content (short for { inline = true, content = "…" }).'),
  z
    .strictObject({
      inline: z.boolean().optional().describe("true when `content` holds the document; false when `path` names a file. Inferred when omitted."),
      content: z.string().optional().describe("The document itself (inline = true)."),
      path: z
        .string()
        .optional()
        .describe(
          "A file holding the document, relative to manifest.toml (or absolute). fledge inlines it into manifest.json, as volar would, so the manifest installs wherever it is written; an absolute path missing on the build machine is left for volar to read when it installs.",
        ),
    })
    .describe("A cloud-init document: inline `content` or a `path`, not both."),
]);

const ExposedPort = z.strictObject({
  name: z.string().optional(),
  port: port.describe("Port the workload listens on in the guest."),
  protocol: z.enum(["tcp", "udp"]).optional().describe('"tcp" (default) or "udp".'),
  host_port: port.optional(),
});

/** manifest.toml v1 as the user writes it: the runtime defaults of a plugin. */
export const ManifestTomlInput = z
  .strictObject({
    $schema: z.string().optional().describe("JSON Schema of this file, for editors."),
    schema_version: z.enum(["v1", "1", "1.0"]).optional().describe('manifest.toml format version: "v1" (the Go fledge\'s spelling), "1" or "1.0". manifest.json always gets Volant\'s "1.0".'),
    name: nonEmpty
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'")
      .optional()
      .describe("Plugin name (`volar vms create … --plugin <name>`). Default: the directory name."),
    version: nonEmpty.optional().describe('Plugin version. Default "0.1.0".'),
    runtime: nonEmpty.optional().describe("Runtime identifier. Default: the name."),
    enabled: z.boolean().optional().describe("Whether Volant may start VMs from the plugin. Default true (Volant's own default is false)."),
    labels: stringMap.optional().describe("Free-form labels."),
    resources: z
      .strictObject({
        cpu_cores: z.number().int().min(1, "must be at least 1").optional().describe("vCPUs. Default 1."),
        memory_mb: z.number().int().min(1, "must be at least 1").optional().describe("Memory, MiB. Default 512."),
      })
      .optional()
      .describe("Default VM size."),
    workload: z
      .strictObject({
        type: z.literal("http").optional().describe('How Volant talks to the workload: "http" (the only type Volant\'s schema accepts).'),
        entrypoint: z.union([nonEmpty, z.array(z.string()).min(1, "must hold at least the program to run")]).describe("The program kestrel starts in the guest: a path, or [program, arg, …]."),
        args: z.array(z.string()).optional().describe("Arguments appended to the entrypoint."),
        base_url: nonEmpty.optional().describe('Where the workload answers HTTP in the guest, e.g. "http://127.0.0.1:8000". Default: from the first exposed tcp port.'),
        workdir: nonEmpty.optional().describe("Working directory of the workload."),
        env: stringMap.optional().describe("Environment of the workload (also accepted as a top-level [env])."),
      })
      .optional()
      .describe("The workload kestrel runs and Volant proxies to."),
    env: stringMap.optional().describe("Environment of the workload (becomes workload.env)."),
    network: z
      .strictObject({
        mode: z.enum(["vsock", "bridged", "dhcp"]).optional().describe('"bridged" (default when [network] is given), "dhcp" or "vsock".'),
        subnet: nonEmpty.optional().describe('Bridged mode: CIDR such as "10.1.0.0/24".'),
        gateway: nonEmpty.optional().describe("Bridged mode: gateway IP."),
        auto_assign: z.boolean().optional().describe("Bridged mode: allocate IPs from the subnet."),
        expose: z.array(ExposedPort).optional().describe("Ports the workload listens on. Not part of Volant's manifest: used to derive workload.base_url, then left out."),
      })
      .optional()
      .describe("Default network of the plugin's VMs."),
    health_check: z
      .strictObject({
        endpoint: nonEmpty.describe('Path probed on the workload, e.g. "/healthz".'),
        timeout_ms: z.number().int().min(0, "must be 0 or more").optional().describe("Default 10000."),
      })
      .optional(),
    actions: z
      .record(
        z.string(),
        z.strictObject({
          description: z.string().optional(),
          method: nonEmpty.describe('HTTP method, e.g. "POST".'),
          path: nonEmpty.describe('Path on the workload, e.g. "/render".'),
          timeout_ms: z.number().int().min(0, "must be 0 or more").optional(),
        }),
      )
      .optional()
      .describe("Named API calls Volant can proxy to the workload."),
    cloud_init: z
      .strictObject({
        datasource: nonEmpty.optional().describe('Default "NoCloud".'),
        seed_mode: z.literal("vfat").optional().describe('"vfat", the only mode Volant supports.'),
        user_data: CloudInitDoc.optional(),
        meta_data: CloudInitDoc.optional(),
        network_config: CloudInitDoc.optional(),
      })
      .optional(),
    devices: z
      .strictObject({
        pci_passthrough: z.array(z.string()).optional().describe('PCI addresses, e.g. "0000:01:00.0".'),
        allowlist: z.array(z.string()).optional().describe('vendor:device patterns, e.g. "10de:*".'),
      })
      .optional(),
    initramfs: z
      .strictObject({ format: z.string().optional().describe("Not part of Volant's manifest: left out with a warning.") })
      .optional()
      .describe("The artifact is filled in by the build; its URL comes from `fledge build --base-url`."),
  })
  .describe("manifest.toml v1: the runtime defaults of a Volant plugin, merged with the build into manifest.json.");
export type ManifestToml = z.output<typeof ManifestTomlInput>;

export interface ManifestConfig {
  /** The manifest.toml read, or undefined when there was none (defaults were used). */
  file?: string;
  /** The TOML text, to place later findings on lines. */
  text?: string;
  data: ManifestToml;
  /** Notes for the user, e.g. which defaults were applied. */
  notes: string[];
}

export interface ManifestTomlCheck {
  /** The valid data, when the schema passed. */
  data?: ManifestToml;
  /** What could be kept of invalid data, so the rules across keys can still run. */
  partial: ManifestToml;
  problems: ConfigIssue[];
}

/** Checks manifest.toml data against the schema; never throws for bad input. */
export function checkManifestTomlData(data: unknown, file: string, text?: string): ManifestTomlCheck {
  const parsed = ManifestTomlInput.safeParse(data);
  if (parsed.success) return { data: parsed.data, partial: parsed.data, problems: [] };
  const problems = zodIssues(parsed.error, file, data, ManifestTomlInput, {
    other: { name: "fledge.toml", here: "manifest.toml", schema: FledgeTomlInput },
    hints: {
      "initramfs.url": "the build fills in the artifact's absolute path; to publish it under a URL, run fledge build --base-url <url>",
      "initramfs.checksum": "the build fills in the artifact's sha256",
      "workload.command": "write the program as `entrypoint` and its arguments as `args`",
      "workload.cmd": "write the program as `entrypoint` and its arguments as `args`",
    },
  });
  if (text) placeIssues(problems, text);
  return { partial: (salvage(ManifestTomlInput, data) ?? {}) as ManifestToml, problems };
}

/** Checks manifest.toml text (syntax and schema); never throws for bad input. */
export function checkManifestToml(text: string, file: string): ManifestTomlCheck {
  text = stripBom(text);
  try {
    return checkManifestTomlData(parseToml(text, file), file, text);
  } catch (err) {
    if (err instanceof ConfigError) return { partial: {}, problems: err.issues };
    throw err;
  }
}

/** Validates manifest.toml data. */
export function normalizeManifestToml(data: unknown, file: string, text?: string): ManifestToml {
  const c = checkManifestTomlData(data, file, text);
  if (!c.data) throw new ConfigError(c.problems);
  return c.data;
}

export function parseManifestToml(text: string, file: string): ManifestToml {
  text = stripBom(text);
  return normalizeManifestToml(parseToml(text, file), file, text);
}

/** The name used when there is no manifest.toml: the directory's name, made a valid plugin name. */
export function defaultPluginName(dir: string): string {
  return (
    basename(dir)
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, "-")
      .replace(/^[^a-z0-9]+/, "") || "plugin"
  );
}

/**
 * Loads manifest.toml. When `required` is false and the file does not exist, returns defaults:
 * name and runtime from the directory name, version 0.1.0, with a note saying so.
 */
export async function loadManifestToml(file: string, opts: { required?: boolean } = {}): Promise<ManifestConfig> {
  const abs = resolve(file);
  try {
    const { data, text } = await readToml(abs);
    return { file: abs, text, data: normalizeManifestToml(data, abs, text), notes: [] };
  } catch (err) {
    if (!opts.required && err instanceof ConfigError && err.issues[0]?.message === "file not found") {
      const name = defaultPluginName(dirname(abs));
      return {
        data: { name, runtime: name, version: "0.1.0" },
        notes: [`no manifest.toml at ${abs}: using name "${name}", runtime "${name}", version 0.1.0`],
      };
    }
    throw err;
  }
}

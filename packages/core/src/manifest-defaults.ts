import type { ManifestToml } from "@fledge/config";
import { FledgeError } from "./errors.js";

/** The manifest.toml keys a plugin may give a default for, and their values. */
export interface ManifestDefaultValues {
  /** The program and its arguments (an image's Entrypoint + Cmd). */
  "workload.entrypoint": string[];
  /** Variables; manifest.toml's `[env]` / `[workload.env]` win variable by variable. */
  "workload.env": Record<string, string>;
  "workload.workdir": string;
  "workload.base_url": string;
  "resources.cpu_cores": number;
  "resources.memory_mb": number;
}
export type ManifestDefaultKey = keyof ManifestDefaultValues;

/** One default, with where it came from. */
export interface ManifestDefault<K extends ManifestDefaultKey = ManifestDefaultKey> {
  key: K;
  value: ManifestDefaultValues[K];
  /** Where the value came from, for the note: `image docker.io/library/nginx@sha256:…`. */
  from: string;
  /** The plugin that set it. */
  plugin?: string;
}

/**
 * Defaults plugins contribute to the manifest (`ctx.manifestDefaults`). manifest.toml always
 * wins; every default used or overridden is reported in a note naming where it came from.
 */
export interface ManifestDefaults {
  /** Sets a default (the last one set for a key wins among plugins). */
  set<K extends ManifestDefaultKey>(key: K, value: ManifestDefaultValues[K], from: string): void;
  /**
   * In `hooks.check`: says a default for `key` will be set during the build, so pre-flight does
   * not demand it of manifest.toml (e.g. an image's Entrypoint, known once it is resolved).
   */
  expect(key: ManifestDefaultKey, from: string): void;
  /** The defaults set so far. */
  list(): readonly ManifestDefault[];
  /** The keys promised with `expect`. */
  expected(): readonly { key: ManifestDefaultKey; from: string }[];
}

export const MANIFEST_DEFAULT_KEYS: readonly ManifestDefaultKey[] = ["workload.entrypoint", "workload.env", "workload.workdir", "workload.base_url", "resources.cpu_cores", "resources.memory_mb"];

/** Placeholders for promised keys, so pre-flight checks manifest.toml as the build will see it. */
const PLACEHOLDER: { [K in ManifestDefaultKey]: ManifestDefaultValues[K] } = {
  "workload.entrypoint": ["/fledge-placeholder"],
  "workload.env": {},
  "workload.workdir": "/",
  "workload.base_url": "http://127.0.0.1:1",
  "resources.cpu_cores": 1,
  "resources.memory_mb": 512,
};

export class ManifestDefaultsImpl implements ManifestDefaults {
  readonly #set = new Map<ManifestDefaultKey, ManifestDefault>();
  readonly #expected: { key: ManifestDefaultKey; from: string }[] = [];
  /** Set by the builder while a plugin's tap runs. */
  plugin: string | undefined;

  set<K extends ManifestDefaultKey>(key: K, value: ManifestDefaultValues[K], from: string): void {
    if (!MANIFEST_DEFAULT_KEYS.includes(key))
      throw new FledgeError("FLEDGE_MANIFEST_DEFAULT", `"${key}" is not a manifest key plugins can give a default for`, { hint: `use one of: ${MANIFEST_DEFAULT_KEYS.join(", ")}` });
    this.#set.set(key, { key, value, from, ...(this.plugin ? { plugin: this.plugin } : {}) } as ManifestDefault);
  }

  expect(key: ManifestDefaultKey, from: string): void {
    if (!MANIFEST_DEFAULT_KEYS.includes(key))
      throw new FledgeError("FLEDGE_MANIFEST_DEFAULT", `"${key}" is not a manifest key plugins can give a default for`, { hint: `use one of: ${MANIFEST_DEFAULT_KEYS.join(", ")}` });
    this.#expected.push({ key, from });
  }

  list(): readonly ManifestDefault[] {
    return [...this.#set.values()];
  }

  expected(): readonly { key: ManifestDefaultKey; from: string }[] {
    return this.#expected;
  }
}

type Written = { [K in ManifestDefaultKey]?: unknown };

function written(toml: ManifestToml): Written {
  return {
    "workload.entrypoint": toml.workload?.entrypoint,
    "workload.env": toml.workload?.env ?? toml.env,
    "workload.workdir": toml.workload?.workdir,
    "workload.base_url": toml.workload?.base_url ?? (toml.network?.expose?.some((e) => (e.protocol ?? "tcp") === "tcp") ? "(from [[network.expose]])" : undefined),
    "resources.cpu_cores": toml.resources?.cpu_cores,
    "resources.memory_mb": toml.resources?.memory_mb,
  };
}

/**
 * manifest.toml with the defaults filled in where it says nothing. Returns the data to compose
 * the manifest from and a note per default used or overridden.
 */
export function applyManifestDefaults(
  toml: ManifestToml,
  defaults: readonly Pick<ManifestDefault, "key" | "value" | "from">[],
  /** Whether there is a manifest.toml (the notes say "there is no manifest.toml" otherwise). */
  hasFile = true,
): { data: ManifestToml; notes: string[]; overridden: string[] } {
  const have = written(toml);
  const w: Record<string, unknown> = { ...(toml.workload ?? {}) };
  const r: Record<string, unknown> = { ...(toml.resources ?? {}) };
  const env: Record<string, string> = {};
  const notes: string[] = [];
  const overridden: string[] = [];
  const show = (v: unknown) => JSON.stringify(v);
  for (const d of defaults) {
    if (d.key === "workload.env") {
      const mine = { ...(toml.env ?? {}), ...(toml.workload?.env ?? {}) };
      const vars = Object.entries(d.value as Record<string, string>);
      const used = vars.filter(([k]) => !(k in mine));
      const kept = vars.filter(([k]) => k in mine).map(([k]) => k);
      for (const [k, v] of used) env[k] = v;
      if (used.length) notes.push(`manifest: workload.env ${used.map(([k]) => k).join(", ")} from ${d.from}`);
      if (kept.length) overridden.push(`manifest: manifest.toml sets ${kept.join(", ")} in its env; the value from ${d.from} is not used`);
      continue;
    }
    if (have[d.key] !== undefined) {
      overridden.push(`manifest: manifest.toml sets ${d.key}; ${show(d.value)} from ${d.from} is not used`);
      continue;
    }
    const [table, key] = d.key.split(".") as ["workload" | "resources", string];
    (table === "workload" ? w : r)[key] = d.value;
    notes.push(`manifest: ${d.key} = ${show(d.value)} from ${d.from} (${hasFile ? "manifest.toml does not set it" : "there is no manifest.toml"})`);
  }
  const data: ManifestToml = { ...toml };
  // Without an entrypoint there is no workload to speak of: composing reports what is missing.
  if (w.entrypoint !== undefined) data.workload = w as NonNullable<ManifestToml["workload"]>;
  if (Object.keys(r).length) data.resources = r as NonNullable<ManifestToml["resources"]>;
  if (Object.keys(env).length) data.env = { ...env, ...(toml.env ?? {}) };
  return { data, notes, overridden };
}

/** manifest.toml with placeholders for the promised keys it does not set (pre-flight). */
export function withPromisedDefaults(toml: ManifestToml, promised: readonly { key: ManifestDefaultKey; from: string }[]): ManifestToml {
  return applyManifestDefaults(
    toml,
    promised.map((p) => ({ key: p.key, value: PLACEHOLDER[p.key], from: p.from })),
  ).data;
}

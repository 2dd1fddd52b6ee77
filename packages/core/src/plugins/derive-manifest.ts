import type { Dirent } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { basename, join, posix } from "node:path";
import type { Mapping } from "@fledge/config";
import { KESTREL_PORT } from "@fledge/manifest";
import type { Builder } from "../builder.js";
import type { BuildContext, Check } from "../context.js";
import { Stage } from "../hooks.js";
import type { ManifestDefaultKey } from "../manifest-defaults.js";
import { EXEC_DIRS } from "../modes.js";
import type { DiscardReason } from "../outputs.js";
import { PLUGIN } from "./names.js";

/** Where the workload listens in the default init mode: not 8080, which is kestrel's (see below). */
export const DEFAULT_WORKLOAD_PORT = 8000;

/** Paths fledge itself fills with a program in the default init mode: not the workload. */
const INFRASTRUCTURE = new Set(["/bin/kestrel", "/bin/busybox", "/init"]);

/** How many candidates a message names before "and N more". */
const SHOW = 5;

/** One program a mapping puts directly in a bin directory. */
export interface MappedProgram {
  /** Its path in the image. */
  path: string;
  /** The mapping as written in fledge.toml (its key). */
  written: string;
}

/**
 * Without a manifest.toml, the manifest keys fledge.toml answers unambiguously (issue 9, "the
 * seed's flows"), as manifest defaults — so a user's manifest.toml, and any plugin that promises
 * a key, always wins:
 *
 * - custom and none init modes: the program that runs is `/init`, so `workload.entrypoint` is
 *   `["/init"]`; `workload.base_url` is `http://127.0.0.1:8080`: with no kestrel in the guest,
 *   Volant still sends a VM's requests to port 8080 there (its agent port), so that is where the
 *   program `/init` starts must answer.
 * - default init mode: the entrypoint is the program kestrel starts — the one file the mappings
 *   put directly in a bin directory, when there is exactly one; `workload.base_url` is
 *   `http://127.0.0.1:8000`: kestrel's own API listens on 8080 in the guest and forwards requests
 *   to base_url, so the workload cannot listen on 8080 too.
 *
 * When the default mode's entrypoint cannot be told, the artifact is still built but no
 * manifest.json is written (Volant would reject one without an entrypoint): the manifest output
 * is discarded with the reasons, and a warning gives the manifest.toml to write.
 *
 * Runs after every other plugin's check (stage `Stage.POST + 1000`), so it sees their `expect`s.
 */
export class DeriveManifestPlugin {
  readonly name = PLUGIN.deriveManifest;
  apply(builder: Builder): void {
    builder.hooks.check.tapPromise({ name: this.name, stage: Stage.POST + 1000 }, async (check, ctx) => {
      if (ctx.manifestConfig.file !== undefined) return; // the user's manifest.toml: nothing is derived
      await derive(check, ctx);
    });
  }
}

async function derive(check: Check, ctx: BuildContext): Promise<void> {
  const defaults = ctx.manifestDefaults;
  const promised = new Set<ManifestDefaultKey>([...defaults.expected().map((e) => e.key), ...defaults.list().map((d) => d.key)]);
  const give = (key: "workload.entrypoint" | "workload.base_url", value: string[] | string, from: string) => {
    if (promised.has(key)) return; // another plugin provides it
    defaults.expect(key, from);
    if (key === "workload.entrypoint") defaults.set(key, value as string[], from);
    else defaults.set(key, value as string, from);
  };
  const mode = ctx.config.init.mode;
  if (mode !== "default") {
    const what = mode === "none" ? "the none init mode" : "the custom init mode";
    give("workload.entrypoint", ["/init"], `${what}: the program that runs is /init (PID 1)`);
    give(
      "workload.base_url",
      `http://127.0.0.1:${KESTREL_PORT}`,
      `${what}: with no kestrel in the guest, Volant sends the VM's requests to port ${KESTREL_PORT} there (where kestrel would listen), so /init's program answers on it`,
    );
    return;
  }

  const baseUrl = `http://127.0.0.1:${DEFAULT_WORKLOAD_PORT}`;
  const baseFrom = `the default init mode: kestrel's own API listens on port ${KESTREL_PORT} in the guest and forwards requests to the workload, so the workload is expected on port ${DEFAULT_WORKLOAD_PORT}; write [workload] base_url in a manifest.toml if it listens elsewhere`;
  if (promised.has("workload.entrypoint")) {
    give("workload.base_url", baseUrl, baseFrom);
    return;
  }
  const programs = await mappedPrograms(ctx.config.mappings);
  if (programs.length === 1) {
    const p = programs[0]!;
    give("workload.entrypoint", [p.path], `the one file the mappings put in a bin directory ("${p.written}" → ${p.path}): the program kestrel starts`);
    give("workload.base_url", baseUrl, baseFrom);
    return;
  }

  // No single program: build the artifact, but write no manifest.json Volant would reject.
  const shown = programs.slice(0, SHOW).map((p) => p.path);
  const more = programs.length > SHOW ? ` and ${programs.length - SHOW} more` : "";
  const why = programs.length
    ? `${programs.length} mapped files land in a bin directory (${shown.join(", ")}${more}), so fledge cannot tell which one kestrel should start`
    : `no mapped file lands in a bin directory (/bin, /usr/bin, /usr/local/bin, …), so fledge cannot tell which program kestrel should start`;
  const entry = programs[0]?.path ?? "/usr/bin/myapp";
  const comment =
    programs.length > 1
      ? `  # or ${programs
          .slice(1, SHOW)
          .map((p) => `"${p.path}"`)
          .join(", ")}${more}`
      : "  # the program kestrel starts";
  const name = ctx.manifestConfig.data.name ?? basename(ctx.config.rootDir);
  const baseUrlLine = promised.has("workload.base_url") ? "" : `base_url = "${baseUrl}"\n`;
  const fix = `name = "${name}"\n\n[workload]\nentrypoint = "${entry}"${comment}\n${baseUrlLine}`.trimEnd();
  const reasons: DiscardReason[] = [{ key: "workload.entrypoint", message: `workload.entrypoint is missing: ${why}`, fix }];
  try {
    ctx.outputs.manifest.discard(reasons);
  } catch {
    // No manifest output (fledge update checks no outputs): the manifest rules say what is missing.
    return;
  }
  check.warning(
    ctx.config.mappings.length ? "mappings" : "",
    `no manifest.json will be written (the artifact is still built): there is no manifest.toml to name the program kestrel starts (workload.entrypoint), and ${why}`,
    `write ${join(ctx.config.rootDir, "manifest.toml")} with workload.entrypoint (and what fledge would have derived):\n${fix}`,
  );
}

/**
 * The regular files the mappings put directly in a bin directory (`/usr/bin/x`, not
 * `/usr/bin/sub/x`), as the mappings stage will copy them: in order, a later mapping replacing
 * what an earlier one put at the same path. Directory mappings are read only down to the bin
 * directories they contain; a symlink on the way is copied as a link, so nothing lands below it.
 */
export async function mappedPrograms(mappings: readonly Mapping[]): Promise<MappedProgram[]> {
  const at = new Map<string, MappedProgram | null>();
  const isBinChild = (p: string) => EXEC_DIRS.includes(posix.dirname(p));
  for (const m0 of mappings) {
    const m = { ...m0, dest: m0.dest.length > 1 ? m0.dest.replace(/\/+$/, "") : m0.dest };
    const st = await stat(m.source).catch(() => undefined); // the mappings stage follows a top-level link too
    if (!st) continue; // reported by the mappings check
    if (st.isFile()) {
      if (isBinChild(m.dest) && !INFRASTRUCTURE.has(m.dest)) at.set(m.dest, { path: m.dest, written: m.written });
      else at.set(m.dest, null);
      continue;
    }
    if (!st.isDirectory()) continue;
    at.set(m.dest, null); // a directory now, whatever was there
    for (const bin of EXEC_DIRS) {
      const rel = m.dest === "/" ? bin.slice(1) : bin === m.dest ? "" : bin.startsWith(m.dest + "/") ? bin.slice(m.dest.length + 1) : undefined;
      if (rel === undefined) continue;
      const hostDir = await realDirBelow(m.source, rel);
      if (!hostDir) continue;
      let entries: Dirent[];
      try {
        entries = await readdir(hostDir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
        const path = `${bin}/${e.name}`;
        at.set(path, e.isFile() && !INFRASTRUCTURE.has(path) ? { path, written: m.written } : null);
      }
    }
  }
  return [...at.values()].filter((p): p is MappedProgram => p !== null).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** `root/rel` when every component below `root` is a real directory (not a symlink), else undefined. */
async function realDirBelow(root: string, rel: string): Promise<string | undefined> {
  let dir = root;
  for (const part of rel.split("/").filter(Boolean)) {
    dir = join(dir, part);
    const st = await lstat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
  }
  return dir;
}

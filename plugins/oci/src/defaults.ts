import type { ImageConfig } from "./image.js";

/** What an image's config suggests for the Volant manifest (manifest.toml always wins). */
export interface ImageDefaults {
  /** Entrypoint followed by Cmd (Docker's rule: Cmd alone is the command). */
  entrypoint?: string[];
  env?: Record<string, string>;
  workdir?: string;
  /** `http://127.0.0.1:<port>` from the one exposed TCP port. */
  baseUrl?: string;
  /** Things worth a note (several ports, a non-root user, …). */
  notes: string[];
}

/** Reads Entrypoint + Cmd, Env, WorkingDir and the exposed port of an image config. */
export function imageDefaults(config: ImageConfig, image: string): ImageDefaults {
  const c = config.config;
  const out: ImageDefaults = { notes: [] };
  const entry = [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
  if (entry.length && entry[0]) out.entrypoint = entry;
  if (c.Env?.length) {
    const env: Record<string, string> = {};
    for (const kv of c.Env) {
      const i = kv.indexOf("=");
      if (i <= 0) continue; // "NAME" alone means "unset" in Docker: nothing to pass
      env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    if (Object.keys(env).length) out.env = env;
  }
  if (c.WorkingDir) out.workdir = c.WorkingDir;
  const ports = Object.keys(c.ExposedPorts ?? {}).sort();
  const tcp = ports.filter((p) => /^\d+(\/tcp)?$/i.test(p)).map((p) => Number(p.split("/")[0]));
  if (tcp.length === 1) out.baseUrl = `http://127.0.0.1:${tcp[0]}`;
  else if (tcp.length > 1) out.notes.push(`${image} exposes several TCP ports (${ports.join(", ")}); set [workload] base_url in manifest.toml to say which one serves HTTP`);
  const user = c.User?.trim();
  if (user && !/^(0|root)(:(0|root))?$/.test(user)) out.notes.push(`${image} runs as user "${user}" under docker; kestrel starts the workload as root`);
  return out;
}

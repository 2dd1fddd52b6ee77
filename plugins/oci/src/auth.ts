import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { DOCKER_HUB } from "./reference.js";

/** Credentials for one registry, and where they were found (for messages; never the secret). */
export interface Credential {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (`identitytoken` in docker's config). */
  identityToken?: string;
  /** `~/.docker/config.json`, `credential helper docker-credential-pass`, … */
  source: string;
}

export interface CredentialLookup {
  credential?: Credential;
  /** Files that were read, in order (for the "configure credentials" hint). */
  searched: string[];
  /** Things worth telling the user (a helper that is missing, an entry that cannot be decoded). */
  notes: string[];
}

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

const HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

/** An `auths` key as registry host (plus an optional namespace path), Docker Hub aliases folded. */
export function normaliseAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, "");
  // docker writes "https://index.docker.io/v1/"; strip API version paths
  k = k.replace(/\/v[12]\/?$/, "").replace(/\/+$/, "");
  const slash = k.indexOf("/");
  const host = slash < 0 ? k : k.slice(0, slash);
  const path = slash < 0 ? "" : k.slice(slash);
  return (HUB_ALIASES.has(host.toLowerCase()) ? DOCKER_HUB : host.toLowerCase()) + path;
}

/** The credential files fledge reads, in the order containers-auth.json(5) gives (then docker's). */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || homedir();
  const out: string[] = [];
  if (env.REGISTRY_AUTH_FILE) out.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) out.push(join(env.XDG_RUNTIME_DIR, "containers", "auth.json"));
  out.push(join(env.XDG_CONFIG_HOME || join(home, ".config"), "containers", "auth.json"));
  out.push(join(env.DOCKER_CONFIG || join(home, ".docker"), "config.json"));
  return [...new Set(out)];
}

/** The most specific key of `keys` that covers `registry/repository` (namespaced keys of containers' auth.json first). */
function bestKey(keys: string[], registry: string, repository: string): string | undefined {
  const want = `${registry}/${repository}`;
  let best: string | undefined;
  let bestLen = -1;
  for (const raw of keys) {
    const k = normaliseAuthKey(raw);
    if (want === k || want.startsWith(k + "/") || k === registry) {
      if (k.length > bestLen) {
        best = raw;
        bestLen = k.length;
      }
    }
  }
  return best;
}

function decodeEntry(e: { auth?: string; username?: string; password?: string; identitytoken?: string }, source: string): Credential | string {
  if (e.identitytoken) return { identityToken: e.identitytoken, username: e.username, source };
  if (e.auth) {
    const s = Buffer.from(e.auth, "base64").toString("utf8");
    const i = s.indexOf(":");
    if (i <= 0) return `${source}: the "auth" value is not base64 of "user:password"`;
    return { username: s.slice(0, i), password: s.slice(i + 1), source };
  }
  if (e.username && e.password) return { username: e.username, password: e.password, source };
  return "";
}

/** The server URL a credential helper knows a registry by (Docker Hub is special). */
function helperServer(registry: string): string {
  return registry === DOCKER_HUB ? "https://index.docker.io/v1/" : registry;
}

/** Runs `docker-credential-<helper> get`; undefined when it has nothing for the server. */
async function runHelper(helper: string, server: string, env: NodeJS.ProcessEnv): Promise<{ username: string; secret: string } | undefined> {
  const bin = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["get"], { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${bin} did not answer within 30 s`));
    }, 30_000);
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(e.code === "ENOENT" ? `${bin} is not installed (not on PATH)` : `${bin}: ${e.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) {
        if (/credentials not found/i.test(out + err)) return resolve(undefined);
        return reject(new Error(`${bin} get failed (exit ${code}): ${(err || out).trim().slice(0, 200)}`));
      }
      try {
        const j = JSON.parse(out) as { Username?: string; Secret?: string };
        resolve(j.Secret ? { username: j.Username ?? "", secret: j.Secret } : undefined);
      } catch {
        reject(new Error(`${bin} get did not print JSON`));
      }
    });
    child.stdin.end(server);
  });
}

/**
 * Finds credentials for `registry/repository` the way podman and docker do: the first credential
 * file (see `authFiles`) with a credential helper or an `auths` entry for it wins. Nothing found
 * means anonymous access (public images).
 */
export async function findCredentials(registry: string, repository: string, env: NodeJS.ProcessEnv = process.env): Promise<CredentialLookup> {
  const searched: string[] = [];
  const notes: string[] = [];
  for (const file of authFiles(env)) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue;
    }
    searched.push(file);
    let data: AuthFile;
    try {
      data = JSON.parse(text) as AuthFile;
    } catch {
      notes.push(`${file} is not valid JSON; it was skipped`);
      continue;
    }
    const helperKey = bestKey(Object.keys(data.credHelpers ?? {}), registry, repository);
    const key = bestKey(Object.keys(data.auths ?? {}), registry, repository);
    const entry = key ? data.auths![key] : undefined;
    const inline = entry && (entry.auth || entry.username || entry.identitytoken);
    // As docker: a per-registry helper first, then an inline entry, then the default store.
    const store = helperKey ? data.credHelpers![helperKey] : !inline ? data.credsStore : undefined;
    if (store) {
      try {
        const got = await runHelper(store, helperServer(registry), env);
        if (got) {
          const source = `credential helper docker-credential-${store} (configured in ${file})`;
          return { credential: got.username === "<token>" ? { identityToken: got.secret, source } : { username: got.username, password: got.secret, source }, searched, notes };
        }
      } catch (err) {
        notes.push(`${file} names the credential helper "${store}": ${(err as Error).message}`);
      }
    }
    if (entry) {
      const c = decodeEntry(entry, file);
      if (typeof c === "string") {
        if (c) notes.push(c);
        continue;
      }
      return { credential: c, searched, notes };
    }
  }
  return { searched, notes };
}

/** One `WWW-Authenticate` challenge. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `WWW-Authenticate` (one or more headers; quoted values with escapes). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  const out: Challenge[] = [];
  for (const v of values) {
    const re = /\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+|$)/y;
    let i = 0;
    while (i < v.length) {
      re.lastIndex = i;
      const m = re.exec(v);
      if (!m) break;
      const challenge: Challenge = { scheme: m[1]!.toLowerCase(), params: {} };
      i = re.lastIndex;
      const param = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(,)?/y;
      for (;;) {
        param.lastIndex = i;
        const p = param.exec(v);
        if (!p) break;
        challenge.params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
        i = param.lastIndex;
        if (!p[4]) break;
        // the next token may start another challenge: "name=" continues this one
        const peek = /\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+\s*=/y;
        peek.lastIndex = i;
        if (!peek.test(v)) break;
      }
      out.push(challenge);
      while (i < v.length && (v[i] === "," || v[i] === " ")) i++;
    }
  }
  return out;
}

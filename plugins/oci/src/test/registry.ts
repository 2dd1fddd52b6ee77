import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, sign } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian's distribution registry and skopeo, or a message saying how to get them. */
export function requireTools(): void {
  for (const [bin, args] of [
    ["docker-registry", ["--version"]],
    ["skopeo", ["--version"]],
  ] as const) {
    const r = spawnSync(bin, args);
    if (r.error) throw new Error(`${bin} is not installed: run \`bash scripts/install-e2e-deps.sh\` (as root)`);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface TokenAuth {
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate whose key signs the tokens. */
  certFile: string;
}

export interface TestRegistry {
  /** `127.0.0.1:<port>`, as image references write it. */
  host: string;
  url: string;
  dir: string;
  stop(): Promise<void>;
}

/**
 * Starts Debian's `docker-registry` (the distribution registry) on a free loopback port, with
 * its storage in a temp directory; waits until it answers. `stop()` ends it and removes the data.
 */
export async function startRegistry(opts: { auth?: TokenAuth } = {}): Promise<TestRegistry> {
  requireTools();
  const dir = mkdtempSync(join(tmpdir(), "fledge-oci-registry-"));
  let lastErr = "";
  for (let tries = 0; tries < 5; tries++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const auth = opts.auth ? `auth:\n  token:\n    realm: ${opts.auth.realm}\n    service: ${opts.auth.service}\n    issuer: ${opts.auth.issuer}\n    rootcertbundle: ${opts.auth.certFile}\n` : "";
    const config = join(dir, "config.yml");
    writeFileSync(
      config,
      `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\n  delete:\n    enabled: true\nhttp:\n  addr: ${host}\n${auth}`,
    );
    const child: ChildProcess = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    const url = `http://${host}`;
    const ready = await waitReady(`${url}/v2/`, child, 15_000);
    if (ready) {
      return {
        host,
        url,
        dir,
        stop: async () => {
          if (child.exitCode === null) {
            child.kill("SIGTERM");
            await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
            if (child.exitCode === null) child.kill("SIGKILL");
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill("SIGKILL");
    await exited;
    lastErr = stderr;
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`docker-registry did not start: ${lastErr.slice(0, 500)}`);
}

async function waitReady(url: string, child: ChildProcess, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null) return false;
    try {
      const r = await fetch(url);
      if (r.status === 200 || r.status === 401) return true;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/**
 * Copies with skopeo (`skopeo copy <flags> <from> <to>`), plain HTTP allowed; throws with its
 * stderr. Asynchronous: a token server in this process must keep answering while skopeo runs.
 */
export function skopeo(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("skopeo", ["--insecure-policy", "copy", "--quiet", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HOME: process.env.HOME ?? tmpdir() } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`skopeo copy ${args.join(" ")} failed: ${err}`))));
  });
}

/** base64url without padding. */
const b64u = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/** libtrust's key ID (what distribution matches a JWT's `kid` against): base32 of sha256(SPKI DER)[:30], in groups of 4. */
function libtrustKeyId(spkiDer: Buffer): string {
  const hash = createHash("sha256").update(spkiDer).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(":");
}

export interface TokenServer {
  realm: string;
  auth: TokenAuth;
  /** Requests seen: their Authorization header (or "") and scope. */
  requests: { authorization: string; scope: string }[];
  stop(): Promise<void>;
}

/**
 * A token server for distribution's `token` auth, on 127.0.0.1: it signs RS256 JWTs with a test
 * key (certificate made with openssl) and grants pull and push on every repository to
 * `user`/`password` (Basic auth); anonymous requests get a token with no access.
 */
export async function startTokenServer(user: string, password: string): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), "fledge-oci-token-"));
  const keyFile = join(dir, "key.pem");
  const certFile = join(dir, "cert.pem");
  const r = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=fledge-test-token"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  const key = createPrivateKey(readFileSync(keyFile));
  const kid = libtrustKeyId(createPublicKey(key).export({ type: "spki", format: "der" }));
  const service = "fledge-test-registry";
  const issuer = "fledge-test-issuer";
  const requests: TokenServer["requests"] = [];
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    const authz = req.headers.authorization ?? "";
    const scopes = u.searchParams.getAll("scope");
    requests.push({ authorization: authz, scope: scopes.join(" ") });
    let granted = false;
    if (authz.startsWith("Basic ")) {
      const [u2, p2] = Buffer.from(authz.slice(6), "base64").toString().split(":");
      if (u2 !== user || p2 !== password) {
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ details: "bad credentials" }));
        return;
      }
      granted = true;
    }
    const now = Math.floor(Date.now() / 1000);
    const access = granted
      ? scopes.flatMap((s) => {
          const [type, name] = s.split(":");
          return type === "repository" && name ? [{ type, name, actions: ["pull", "push"] }] : [];
        })
      : [];
    const header = { alg: "RS256", typ: "JWT", kid };
    const claims = { iss: issuer, sub: granted ? user : "", aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: String(Math.random()), access };
    const signingInput = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
    const token = `${signingInput}.${b64u(sign("sha256", Buffer.from(signingInput), key))}`;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, expires_in: 300 }));
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  mkdirSync(dir, { recursive: true });
  return {
    realm,
    auth: { realm, service, issuer, certFile },
    requests,
    stop: async () => {
      await new Promise((res) => server.close(res));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

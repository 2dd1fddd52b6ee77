/**
 * Test helpers: real HTTP servers on 127.0.0.1 (a counting file server and a fake GitHub
 * releases API). Imported as `@fledge/fetch/testing`; not part of the runtime API.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export type Handler = (req: IncomingMessage, res: ServerResponse, hit: number) => void | Promise<void>;

/** A real HTTP server on 127.0.0.1 for tests; counts and records every request. */
export interface TestServer {
  url: string;
  port: number;
  /** Every request path, in order. */
  log: string[];
  /** Request headers, in order. */
  headers: IncomingMessage["headers"][];
  routes: Map<string, Handler>;
  route(path: string, h: Handler): void;
  hits(path: string): number;
  close(): Promise<void>;
}

export async function startServer(routes: Record<string, Handler> = {}, port = 0): Promise<TestServer> {
  const map = new Map(Object.entries(routes));
  const log: string[] = [];
  const headers: IncomingMessage["headers"][] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    log.push(path);
    headers.push(req.headers);
    const h = map.get(path);
    if (!h) {
      res.statusCode = 404;
      res.end("not found");
      return;
    }
    try {
      await h(req, res, log.filter((p) => p === path).length);
    } catch (err) {
      res.statusCode = 599;
      res.end(String(err));
    }
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    log,
    headers,
    routes: map,
    route: (p, h) => map.set(p, h),
    hits: (p) => log.filter((x) => x === p).length,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Serves fixed bytes. */
export const bytes =
  (data: Buffer | string, type = "application/octet-stream"): Handler =>
  (_req, res) => {
    res.setHeader("content-type", type);
    res.setHeader("content-length", Buffer.byteLength(data));
    res.end(data);
  };

export interface FakeRelease {
  tag: string;
  /** Asset name → content. A `checksums.txt` here is served as given. */
  assets: Record<string, Buffer | string>;
}

export interface FakeGitHub extends TestServer {
  /** What FLEDGE_GITHUB_API should be. */
  api: string;
  repo: string;
  releases: Map<string, FakeRelease>;
  /** Tag answered for `releases/latest`. */
  latest?: string;
  /** When set, the API answers 403 with `x-ratelimit-remaining: 0`. */
  rateLimited: boolean;
  /** API requests so far (paths under /repos/). */
  apiHits(): number;
  addRelease(r: FakeRelease): void;
}

/** A sha256sum line for `name`. */
export function checksumLine(content: Buffer | string, name: string): string {
  return `${createHash("sha256").update(content).digest("hex")}  ${name}\n`;
}

/**
 * A fake GitHub releases API on 127.0.0.1: `/repos/<repo>/releases/latest`,
 * `/repos/<repo>/releases/tags/<tag>`, and assets under `/download/<tag>/<name>`.
 */
export async function startFakeGitHub(opts: { repo?: string; releases?: FakeRelease[]; latest?: string } = {}): Promise<FakeGitHub> {
  const repo = opts.repo ?? "volantvm/volant";
  const srv = await startServer();
  const gh = srv as FakeGitHub;
  gh.api = srv.url;
  gh.repo = repo;
  gh.releases = new Map();
  gh.latest = opts.latest;
  gh.rateLimited = false;
  gh.apiHits = () => srv.log.filter((p) => p.startsWith("/repos/")).length;
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.statusCode = status;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(body));
  };
  const releaseJson = (r: FakeRelease) => ({
    tag_name: r.tag,
    name: r.tag,
    assets: Object.keys(r.assets)
      .sort()
      .map((name) => ({ name, browser_download_url: `${srv.url}/download/${r.tag}/${name}` })),
  });
  const answer =
    (r: FakeRelease | undefined): Handler =>
    (_req, res) => {
      if (gh.rateLimited) {
        res.setHeader("x-ratelimit-remaining", "0");
        res.setHeader("x-ratelimit-reset", "1893456000");
        return json(res, 403, { message: "API rate limit exceeded" });
      }
      if (!r) return json(res, 404, { message: "Not Found" });
      json(res, 200, releaseJson(r));
    };
  gh.addRelease = (r) => {
    gh.releases.set(r.tag, r);
    srv.route(`/repos/${repo}/releases/tags/${encodeURIComponent(r.tag)}`, (req, res, hit) => answer(gh.releases.get(r.tag))(req, res, hit));
    for (const [name, content] of Object.entries(r.assets)) srv.route(`/download/${r.tag}/${name}`, bytes(content));
  };
  srv.route(`/repos/${repo}/releases/latest`, (req, res, hit) => answer(gh.latest ? gh.releases.get(gh.latest) : undefined)(req, res, hit));
  for (const r of opts.releases ?? []) gh.addRelease(r);
  return gh;
}

/** How a misbehaving server answers (see `startRawServer`). */
export type RawBehaviour =
  /** Content-Length, the body, then the server closes the connection at once (HTTP/1.0 style). */
  | "close-after-body"
  /** No Content-Length: the body ends when the server closes the connection. */
  | "eof-delimited"
  /** Content-Length, half the body, then silence with the connection open. */
  | "stall"
  /** Content-Length, half the body, then the connection closes. */
  | "truncate"
  /** Headers, then one byte every `dribbleMs`, forever. */
  | "dribble";

export interface RawServer {
  url: string;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/**
 * An HTTP server on 127.0.0.1 written on raw TCP, so it can misbehave exactly: the path names
 * the behaviour (`/close-after-body`, `/eof-delimited`, `/stall`, `/truncate`, `/dribble`).
 */
export async function startRawServer(body: Buffer, opts: { dribbleMs?: number } = {}): Promise<RawServer> {
  const { createServer: createTcpServer } = await import("node:net");
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let count = 0;
  const server = createTcpServer((socket) => {
    count++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let head = "";
    socket.on("data", (d) => {
      if (head.includes("\r\n\r\n")) return;
      head += d.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const path = /^GET (\S+)/.exec(head)?.[1]?.split("?")[0]?.slice(1) as RawBehaviour;
      const half = body.subarray(0, body.length >> 1);
      switch (path) {
        case "close-after-body":
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
          socket.end(body);
          return;
        case "eof-delimited":
          socket.write("HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
          socket.end(body);
          return;
        case "stall":
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
          socket.write(half);
          return;
        case "truncate":
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
          socket.end(half);
          return;
        case "dribble": {
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
          let i = 0;
          const t = setInterval(() => {
            if (socket.destroyed || i >= body.length) return clearInterval(t);
            socket.write(body.subarray(i, ++i));
          }, opts.dribbleMs ?? 1000);
          timers.add(t);
          return;
        }
        default:
          socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => count,
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearInterval(t);
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

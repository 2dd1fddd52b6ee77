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

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** Where the seed's busybox_url points, below `https://busybox.net` (mirrored to `<base>/busybox.net/…`). */
export const BUSYBOX_PATH = "/downloads/binaries/1.35.0-x86_64-linux-musl/busybox";

export interface ReleaseServer {
  /** `http://127.0.0.1:<port>`: `FLEDGE_GITHUB_API=<base>/api`, `FLEDGE_MIRRORS=https://busybox.net/=<base>/busybox.net/`. */
  base: string;
  /** Every path asked for, in order. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * A stand-in for GitHub's releases API of volantvm/volant (the latest release, tag
 * `v0.0.0-e2e`, with `assets` at `/download/v0.0.0-e2e/<name>`) and, when `busybox` is given, for
 * busybox.net's copy of busybox 1.35.0, on 127.0.0.1.
 */
export async function startReleaseServer(opts: { assets: Record<string, Buffer | string>; busybox?: Buffer }): Promise<ReleaseServer> {
  const tag = "v0.0.0-e2e";
  const requests: string[] = [];
  let base = "";
  const server = createServer((req, res) => {
    const url = req.url ?? "";
    requests.push(url);
    const send = (body: Buffer | string, type = "application/octet-stream") => res.writeHead(200, { "content-type": type, "content-length": Buffer.byteLength(body) }).end(body);
    if (opts.busybox && url === `/busybox.net${BUSYBOX_PATH}`) return send(opts.busybox);
    if (url === "/api/repos/volantvm/volant/releases/latest") {
      const assets = Object.keys(opts.assets).map((name) => ({ name, browser_download_url: `${base}/download/${tag}/${name}` }));
      return send(JSON.stringify({ tag_name: tag, assets }), "application/json");
    }
    const asset = url.startsWith(`/download/${tag}/`) ? opts.assets[url.slice(`/download/${tag}/`.length)] : undefined;
    if (asset !== undefined) return send(asset);
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

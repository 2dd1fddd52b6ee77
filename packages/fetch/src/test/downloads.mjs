// 200 downloads in a row from misbehaving loopback servers, in a process of its own so that an
// exception nothing can catch (as undici 7's assert(!this.paused), nodejs/undici#5360) would
// end it. Prints one JSON line: {"ok":N,"failed":N,"failures":[…]}; exit 0 unless it crashed.
// Usage: node downloads.mjs <dist dir of @fledge/fetch> <cache dir> [count]
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [dist, cacheDir, n = "200"] = process.argv.slice(2);
const { Fetcher, HttpClient, isFetchError } = await import(pathToFileURL(join(dist, "index.js")).href);
const { startRawServer } = await import(pathToFileURL(join(dist, "testing.js")).href);

const body = Buffer.alloc(256 * 1024);
for (let i = 0; i < body.length; i++) body[i] = (i * 2654435761) >>> 24;
const sha = createHash("sha256").update(body).digest("hex");
const srv = await startRawServer(body);
const http = { retries: 1, retryBaseMs: 5, retryMaxMs: 10, idleTimeoutMs: 250, connectTimeoutMs: 1000, deadlineMs: 10_000 };
const fetcher = new Fetcher({ cacheDir, env: {}, http });
const client = new HttpClient(http);

/** A consumer much slower than loopback: 1 KiB buffer, a timer per chunk. */
const slowSink = (hash) => async (stream) => {
  await pipeline(
    stream,
    new Writable({
      highWaterMark: 1024,
      write(chunk, _e, cb) {
        hash.update(chunk);
        setTimeout(cb, 1);
      },
    }),
  );
};

const cycle = ["close-after-body", "eof-delimited", "close-after-body", "eof-delimited", "truncate", "close-after-body", "eof-delimited", "stall"];
const failures = [];
let ok = 0;
for (let i = 0; i < Number(n); i++) {
  const kind = cycle[i % cycle.length];
  const slow = i % 2 === 1;
  const url = `${srv.url}/${kind}?n=${i}`;
  try {
    let digest;
    if (slow) {
      const hash = createHash("sha256");
      await client.get(url, { label: `download ${i}`, sink: slowSink(hash) });
      digest = hash.digest("hex");
    } else {
      digest = (await fetcher.fetch({ url, label: `download ${i}`, refresh: true })).sha256;
    }
    if (digest !== sha) throw new Error(`download ${i} (${url}) gave sha256 ${digest}, expected ${sha}`);
    ok++;
  } catch (err) {
    failures.push({ i, kind, slow, fledgeError: isFetchError(err), namesUrl: String(err?.message).includes(url), code: err?.code, message: err?.message });
  }
}
await fetcher.close();
await client.close();
await srv.close();
process.stdout.write(JSON.stringify({ ok, failed: failures.length, connections: srv.connections(), failures }) + "\n");

// Run under different Node binaries: prints the sha256 of one artifact per compressor.
import { createHash } from "node:crypto";
import { rng } from "./rng.mjs";
const { archiveToBuffer } = await import(new URL("../../dist/index.js", import.meta.url).href);
const r = rng(2024);
const entries = [];
const words = ["kernel", "init", "plugin", "volant", "fledge", "busybox", "\n", " ", "0x1f", "mount"];
for (let i = 0; i < 200; i++) {
  const n = Math.floor(r() * 20000);
  const text = i % 3 !== 0;
  const data = Buffer.alloc(n);
  if (text) {
    let p = 0;
    while (p < n) p += data.write(words[Math.floor(r() * words.length)], p);
  } else for (let j = 0; j < n; j++) data[j] = r() < 0.3 ? Math.floor(r() * 256) : j & 0xff;
  entries.push({ path: `d${i % 9}/f${i}`, type: "file", mode: 0o644, data });
}
const out = {};
for (const c of ["gzip", "zstd", "xz", "lz4", "none"]) {
  const buf = await archiveToBuffer(entries, { mtime: 1704067200, compressor: c, workers: Number(process.argv[2] ?? 2), level: c === "xz" ? 1 : undefined, segment: { min: 64 << 10, max: 256 << 10 } });
  out[c] = createHash("sha256").update(buf).digest("hex");
}
console.log(JSON.stringify({ node: process.version, ...out }));

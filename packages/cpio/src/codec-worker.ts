/** Worker thread: compresses segments with a built-in codec or a plugin's worker module. */
import type { Transform } from "node:stream";
import { parentPort } from "node:worker_threads";
import { codecs, warmCodec } from "./codecs.js";
import { runFileJob, type CodecRef, type FileJob, type WorkerRequest } from "./jobs.js";
import { GARBAGE_LIMIT, collectGarbageAbove } from "./memory.js";

const external = new Map<string, Promise<{ compress(data: Uint8Array, level: number): Uint8Array | Promise<Uint8Array>; createStream?(level?: number): Transform }>>();

async function resolve(ref: CodecRef) {
  if (ref.builtin) {
    await warmCodec(ref.name);
    return codecs[ref.name]!;
  }
  let p = external.get(ref.module!);
  if (!p) {
    p = import(ref.module!).then((m) => {
      const c = m.compressors?.[ref.name] ?? m.default;
      if (!c?.compress) throw new Error(`${ref.module} exports no compressor "${ref.name}" (expected compressors.${ref.name} or a default export with compress())`);
      return c;
    });
    external.set(ref.module!, p);
  }
  return p;
}

parentPort!.on("message", async (msg: WorkerRequest) => {
  collectGarbageAbove(GARBAGE_LIMIT);
  try {
    const codec = await resolve(msg.codec);
    if (msg.op === "compress") {
      const out = await codec.compress(msg.data, msg.level);
      // The input segment buffer goes back to the caller's buffer pool (unless the output is it).
      const input = msg.data.buffer as ArrayBuffer;
      const back = out.buffer !== input ? [input] : [];
      // Transfer the output when it owns its memory; native codecs return external buffers,
      // which cannot be transferred, so those are copied.
      const owns = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength && !Buffer.isBuffer(out);
      if (owns) {
        try {
          parentPort!.postMessage({ id: msg.id, ok: true, data: out, input: back.length ? msg.data : undefined }, [out.buffer as ArrayBuffer, ...back]);
          return;
        } catch {
          // fall through to a copy
        }
      }
      const copy = new Uint8Array(out);
      parentPort!.postMessage({ id: msg.id, ok: true, data: copy, input: back.length ? msg.data : undefined }, [copy.buffer, ...back]);
    } else {
      const r = await runFileJob(codec, msg as FileJob);
      parentPort!.postMessage({ id: msg.id, ok: true, ...r });
    }
  } catch (err) {
    const e = err as Error & { code?: string; path?: string };
    parentPort!.postMessage({ id: msg.id, ok: false, error: { message: e.message, code: e.code, path: e.path, name: e.name } });
  }
});

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Dead ArrayBuffers (segments read, compressed outputs written, file chunks streamed) live
 * outside V8's heap, and V8 collects them only once 64 MB or more have piled up — per thread.
 * With a main thread and two workers that alone is ~200 MB of peak RSS holding garbage. Each
 * thread calls this between jobs; past `limit` bytes of ArrayBuffers it collects (a few ms with
 * the small heaps here), which keeps peak RSS flat whatever the size of the tree.
 */
let gc: ((opts?: { type?: "major" | "minor" }) => void) | null | undefined;

export function collectGarbageAbove(limit: number): void {
  if (gc === undefined) {
    try {
      setFlagsFromString("--expose-gc");
      gc = runInNewContext("gc") as typeof gc;
    } catch {
      gc = null;
    }
  }
  if (gc && process.memoryUsage().arrayBuffers > limit) gc();
}

/** ArrayBuffers a thread may hold before it collects. */
export const GARBAGE_LIMIT = 32 << 20;

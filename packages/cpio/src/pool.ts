import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { CpioError } from "./errors.js";
import type { WorkerRequest } from "./jobs.js";

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
type Pending = { resolve: (v: any) => void; reject: (e: Error) => void };

/** The asset of fledge's one-file executable that holds the worker script (a CommonJS bundle). */
export const WORKER_ASSET = "@fledge/cpio/codec-worker.cjs";

interface SeaModule {
  isSea(): boolean;
  getAsset(key: string, encoding: string): string;
}

/** `node:sea` inside a single executable application, else undefined. */
function sea(): SeaModule | undefined {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  try {
    const m = get?.("node:sea") as SeaModule | undefined;
    return m?.isSea() ? m : undefined;
  } catch {
    return undefined;
  }
}

/** How to start a worker: the embedded script inside the one-file executable, else the module file. */
function workerSource(): { url: URL } | { code: string } {
  const s = sea();
  if (!s) return { url: workerUrl() };
  try {
    return { code: s.getAsset(WORKER_ASSET, "utf8") };
  } catch (err) {
    throw new CpioError("EWORKER", `this executable has no asset ${WORKER_ASSET} (${(err as Error).message}); rebuild it with npm run package`);
  }
}

/** The worker script: next to this module once built; from src/ (tests), the built copy. */
function workerUrl(): URL {
  const here = new URL("./codec-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL("../dist/codec-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new CpioError("EWORKER", `cannot find codec-worker.js next to ${fileURLToPath(import.meta.url)}; build @fledge/cpio first`);
}

/**
 * Up to `size` worker threads, started on demand: a new one only when every running one is busy,
 * so a build whose segments all come from the cache starts none. Jobs go to the least busy one.
 */
export class CodecPool {
  readonly #workers: { w: Worker; busy: number }[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #source: { url: URL } | { code: string };
  #next = 1;
  #failed: Error | undefined;

  constructor(private readonly size: number) {
    this.#source = workerSource();
  }

  #start(): { w: Worker; busy: number } {
    const src = this.#source;
    const w = "code" in src ? new Worker(src.code, { eval: true }) : new Worker(src.url);
    const slot = { w, busy: 0 };
    w.on("message", (m: { id: number; ok: boolean; error?: { message: string; code?: string; path?: string } } & Record<string, unknown>) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      slot.busy--;
      if (m.ok) p.resolve(m);
      else p.reject(new CpioError(m.error!.code ?? "ECOMPRESS", m.error!.message, m.error!.path));
    });
    w.on("error", (err) => this.#fail(err));
    w.on("exit", (code) => {
      if (code !== 0) this.#fail(new CpioError("EWORKER", `a compression worker exited with code ${code}`));
    });
    this.#workers.push(slot);
    return slot;
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  run<T>(job: WithoutId<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#next++;
    let slot = this.#workers.reduce<{ w: Worker; busy: number } | undefined>((a, b) => (a && a.busy <= b.busy ? a : b), undefined);
    if (!slot || (slot.busy > 0 && this.#workers.length < this.size)) slot = this.#start();
    const chosen = slot;
    chosen.busy++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        chosen.w.postMessage({ ...job, id }, transfer);
      } catch {
        chosen.w.postMessage({ ...job, id });
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((s) => s.w.terminate()));
  }
}

/**
 * A bounded pool of segment buffers shared by every compressor: at most `limit` are out at once
 * (acquire waits for one to come back), and returned ones are reused, so the memory for segments
 * in flight is fixed whatever the size of the tree. A segment larger than `slab` (an entry bigger
 * than a segment that is not a host file) gets a buffer of its own, still counted.
 */
export class BufferPool {
  readonly #free: ArrayBuffer[] = [];
  readonly #waiting: (() => void)[] = [];
  #out = 0;

  constructor(
    readonly slab: number,
    readonly limit: number,
  ) {}

  async acquire(size: number): Promise<Buffer> {
    while (this.#out >= this.limit) await new Promise<void>((r) => this.#waiting.push(r));
    this.#out++;
    if (size > this.slab) return Buffer.from(new ArrayBuffer(size));
    // Not zero-filled: callers write every byte they hand on.
    const ab = this.#free.pop() ?? Buffer.allocUnsafeSlow(this.slab).buffer;
    return Buffer.from(ab as ArrayBuffer, 0, size);
  }

  /** Gives a buffer back for reuse (its memory must no longer be referenced elsewhere). */
  release(buf: Uint8Array): void {
    const ab = buf.buffer as ArrayBuffer;
    if (ab.byteLength === this.slab && this.#free.length < this.limit) this.#free.push(ab);
    this.#done();
  }

  /** The buffer was handed on for good (e.g. to the output); a new one may be made. */
  discard(): void {
    this.#done();
  }

  #done(): void {
    this.#out--;
    this.#waiting.shift()?.();
  }
}

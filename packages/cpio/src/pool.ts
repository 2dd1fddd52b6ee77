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

/** A job one worker may hold a second job behind (pipelining hides the round trip); larger ones get a worker to themselves. */
const SMALL_JOB = 4 << 20;

type Slot = { w: Worker; busy: number; big: number };
type Queued = { job: WithoutId<WorkerRequest>; transfer: ArrayBuffer[]; weight: number; pending: Pending };

/**
 * Up to `size` worker threads, started on demand: a new one only when every running one is busy,
 * so a build whose segments all come from the cache starts none. Jobs wait here, in the order
 * they were submitted, and go to an idle worker; a worker takes a second job behind a small one
 * (so it never waits for the main thread between two segments) but never queues anything behind
 * a large one (a big file compressed on one worker must not hold up segments another worker
 * could take). Which worker runs a job never changes its bytes.
 */
export class CodecPool {
  readonly #workers: Slot[] = [];
  readonly #pending = new Map<number, Pending & { slot: Slot; weight: number }>();
  readonly #queue: Queued[] = [];
  readonly #source: { url: URL } | { code: string };
  #next = 1;
  #failed: Error | undefined;

  constructor(private readonly size: number) {
    this.#source = workerSource();
  }

  #start(): Slot {
    const src = this.#source;
    const w = "code" in src ? new Worker(src.code, { eval: true }) : new Worker(src.url);
    const slot: Slot = { w, busy: 0, big: 0 };
    w.on("message", (m: { id: number; ok: boolean; error?: { message: string; code?: string; path?: string } } & Record<string, unknown>) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      slot.busy--;
      if (p.weight > SMALL_JOB) slot.big--;
      this.#pump();
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
    for (const q of this.#queue.splice(0)) q.pending.reject(err);
  }

  /** The worker for the next job: an idle one, a new one, or one busy with a single small job; none if all are taken. */
  #slotFor(weight: number): Slot | undefined {
    const idle = this.#workers.find((s) => s.busy === 0);
    if (idle) return idle;
    if (this.#workers.length < this.size) return this.#start();
    if (weight > SMALL_JOB) return undefined;
    return this.#workers.find((s) => s.busy === 1 && s.big === 0);
  }

  #pump(): void {
    while (this.#queue.length && !this.#failed) {
      const slot = this.#slotFor(this.#queue[0]!.weight);
      if (!slot) return;
      const { job, transfer, weight, pending } = this.#queue.shift()!;
      const id = this.#next++;
      slot.busy++;
      if (weight > SMALL_JOB) slot.big++;
      this.#pending.set(id, { ...pending, slot, weight });
      try {
        slot.w.postMessage({ ...job, id }, transfer);
      } catch {
        slot.w.postMessage({ ...job, id });
      }
    }
  }

  run<T>(job: WithoutId<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#failed) return Promise.reject(this.#failed);
    const weight = job.op === "compress" ? job.data.length : job.size;
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ job, transfer, weight, pending: { resolve, reject } });
      this.#pump();
    });
  }

  async close(): Promise<void> {
    for (const q of this.#queue.splice(0)) q.pending.reject(new CpioError("EWORKER", "the compression workers were stopped"));
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

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { CpioError } from "./errors.js";
import type { WorkerRequest } from "./jobs.js";

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
type Pending = { resolve: (v: any) => void; reject: (e: Error) => void };

/** The worker script: next to this module once built; from src/ (tests), the built copy. */
function workerUrl(): URL {
  const here = new URL("./codec-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL("../dist/codec-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new CpioError("EWORKER", `cannot find codec-worker.js next to ${fileURLToPath(import.meta.url)}; build @fledge/cpio first`);
}

/** A fixed set of worker threads; jobs go to the least busy one. */
export class CodecPool {
  readonly #workers: { w: Worker; busy: number }[] = [];
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #failed: Error | undefined;

  constructor(size: number) {
    const url = workerUrl();
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
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
    }
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  run<T>(job: WithoutId<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#next++;
    const slot = this.#workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    slot.busy++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        slot.w.postMessage({ ...job, id }, transfer);
      } catch {
        slot.w.postMessage({ ...job, id });
      }
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((s) => s.w.terminate()));
  }
}

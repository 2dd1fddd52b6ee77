import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { existsSync, readdirSync, readFileSync } from "node:fs";

/** The built CLI, as a user runs it. */
export const CLI = fileURLToPath(new URL("../../packages/cli/dist/bin.js", import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `fledge <args>` in `cwd` with the built CLI (`npm run build` first). */
export function fledge(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number }): Promise<RunResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, NO_COLOR: "1", ...opts.env },
      uid: opts.uid,
      gid: opts.gid,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export interface LiveFledge {
  pid: number;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (128 + n when killed by signal n). */
  exited: Promise<number>;
  kill(signal: NodeJS.Signals): void;
  /** Waits until `stream` matches `re`; rejects on timeout or exit, with what was printed. */
  waitFor(re: RegExp, stream: "stdout" | "stderr", timeoutMs: number): Promise<RegExpExecArray>;
}

/** Starts `fledge <args>` and lets the test talk to it while it runs (fledge run, fledge dev). */
export function spawnFledge(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): LiveFledge {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { ...process.env, NO_COLOR: "1", ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  const live: LiveFledge = {
    pid: child.pid!,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => child.on("close", (code, signal) => resolve(code ?? 128 + (signal ? (({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0) : 0)))),
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitFor: (re, stream, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(live[stream]);
          if (m) {
            done();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} on ${stream}\nstdout:\n${live.stdout}\nstderr:\n${live.stderr}`));
        }, timeoutMs);
        const onExit = () => {
          check();
          done();
          reject(new Error(`fledge exited before ${re} appeared on ${stream}\nstdout:\n${live.stdout}\nstderr:\n${live.stderr}`));
        };
        const done = () => {
          clearTimeout(timer);
          child.stdout.off("data", check);
          child.stderr.off("data", check);
          child.off("close", onExit);
        };
        child.stdout.on("data", check);
        child.stderr.on("data", check);
        child.on("close", onExit);
        check();
      }),
  };
  child.stdout.setEncoding("utf8").on("data", (d: string) => (live.stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (live.stderr += d));
  return live;
}

/** The pids whose parent is `pid` (Linux /proc). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** True while a process exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** GETs `url` until it answers 2xx or `timeoutMs` passes. */
export async function httpGet(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      const body = await res.text();
      if (res.ok) return { status: res.status, body };
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

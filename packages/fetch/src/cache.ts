import { mkdir, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

/** `$FLEDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/fledge`, else `~/.cache/fledge`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FLEDGE_CACHE_DIR) return env.FLEDGE_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "fledge");
  return join(homedir(), ".cache", "fledge");
}

/** A content-addressed store: `<dir>/sha256/<hex>`. */
export class ContentCache {
  constructor(readonly dir: string) {}

  pathFor(sha256: string): string {
    return join(this.dir, "sha256", sha256);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      return (await stat(this.pathFor(sha256))).isFile();
    } catch {
      return false;
    }
  }

  /** A temp path in the cache directory, so the final rename is atomic. */
  async tempPath(): Promise<string> {
    const dir = join(this.dir, "tmp");
    await mkdir(dir, { recursive: true });
    return join(dir, `${process.pid}-${randomBytes(6).toString("hex")}`);
  }

  /** Moves a verified temp file into place. Concurrent writers of the same content are fine. */
  async commit(temp: string, sha256: string): Promise<string> {
    const dest = this.pathFor(sha256);
    await mkdir(join(this.dir, "sha256"), { recursive: true });
    await rename(temp, dest);
    return dest;
  }

  async discard(temp: string): Promise<void> {
    await rm(temp, { force: true });
  }
}

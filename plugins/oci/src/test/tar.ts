import { pack, type Header } from "tar-stream";

/** A tar member for test layers (tar-stream's header, with data for files). */
export type TestMember = Partial<Header> & { name: string; data?: string | Uint8Array; pax?: Record<string, string> };

/** A tar (ustar, pax where needed) written by tar-stream, as test layers are. */
export async function makeTar(members: TestMember[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on("data", (c: unknown) => chunks.push(Buffer.from(c as Uint8Array)));
    p.on("end", () => resolve());
    p.on("error", reject);
  });
  for (const m of members) {
    const { data, ...h } = m;
    const header = { mode: h.type === "directory" ? 0o755 : 0o644, uid: 0, gid: 0, mtime: new Date(1_600_000_000_000), ...h } as Header;
    await new Promise<void>((resolve, reject) => {
      if (data !== undefined) p.entry(header, typeof data === "string" ? Buffer.from(data) : data, (err) => (err ? reject(err) : resolve()));
      else p.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

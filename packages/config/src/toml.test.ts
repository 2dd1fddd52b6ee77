import { execFileSync } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "./errors.js";
import { checkFledgeConfig } from "./fledge.js";
import { MAX_TOML_DEPTH, parseToml, readToml } from "./toml.js";

const issues = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error("expected a ConfigError");
};

describe("readToml / parseToml: bounded, regular files only (issue 11)", () => {
  it("refuses a FIFO without opening it, and a device", async () => {
    const dir = await mkdtemp(join(tmpdir(), "toml-"));
    execFileSync("mkfifo", [join(dir, "fledge.toml")]);
    const [i] = await issues(readToml(join(dir, "fledge.toml")));
    expect(i!.message).toMatch(/^is a FIFO \(named pipe\), not a regular file/);
    expect(i!.hint).toMatch(/regular TOML file/);
    expect((await issues(readToml("/dev/zero")))[0]!.message).toMatch(/character device/);
  });

  it("refuses a file over 1 MiB", async () => {
    const dir = await mkdtemp(join(tmpdir(), "toml-"));
    await writeFile(join(dir, "big.toml"), "# " + "x".repeat(1024 * 1024) + "\n");
    expect((await issues(readToml(join(dir, "big.toml"))))[0]!.message).toMatch(/larger than 1024 KiB/);
  });

  it("refuses nesting deeper than the limit (a 50,000-key header used to run out of memory), dotted keys, array tables", () => {
    const deep = `[${Array(50_000).fill("a").join(".")}]\nx = 1\n`;
    expect(() => parseToml(deep, "f.toml")).toThrow(/nested more than 32 levels deep/);
    expect(() => parseToml(`${Array(40).fill("k").join(".")} = 1\n`, "f.toml")).toThrow(ConfigError);
    expect(() => parseToml(`[[${Array(40).fill("t").join(".")}]]\n`, "f.toml")).toThrow(ConfigError);
    expect(() => parseToml(`${Array(MAX_TOML_DEPTH).fill("k").join(".")} = 1\n`, "f.toml")).not.toThrow();
  });

  it("accepts a UTF-8 BOM, keeping columns right on line 1", async () => {
    const dir = await mkdtemp(join(tmpdir(), "toml-"));
    await writeFile(join(dir, "fledge.toml"), '\ufeffversion = "1"\n');
    expect((await readToml(join(dir, "fledge.toml"))).data).toEqual({ version: "1" });
    const c = checkFledgeConfig('\ufeffversion = "2"\n', join(dir, "fledge.toml"));
    expect(c.problems[0]).toMatchObject({ keyPath: "version", line: 1, column: 1 });
  });
});

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as core from "@fledge/core";
import * as testing from "@fledge/core/testing";

describe("the public surface of @fledge/core", () => {
  it("exports what plugin authors and the CLI need, and nothing else", () => {
    expect(Object.keys(core).sort()).toEqual(
      [
        "AfterBuildStage",
        "Builder",
        "CheckError",
        "DEFAULT_MTIME",
        "FIRST_PARTY",
        "FledgeError",
        "InputSet",
        "LOCK_FILE",
        "MANIFEST_DEFAULT_KEYS",
        "OutputPathError",
        "PluginError",
        "PostBuildError",
        "RootfsTree",
        "STREAM_MEMORY_LIMIT",
        "Stage",
        "TREE_STAGES",
        "build",
        "defaultArtifactName",
        "imagePath",
        "isFledgeError",
        "lockChanges",
        "preflight",
        "readLock",
        "resolveMtime",
        "rootCause",
        "runTreeStages",
        "tappedKeys",
        "updateLock",
      ].sort(),
    );
    expect(Object.keys(testing)).toEqual(["testBuild"]);
  });

  it("reads no private field of tapable (no _map, _args, _x, _taps, _interceptors, …)", () => {
    const src = fileURLToPath(new URL(".", import.meta.url));
    const files = [...readdirSync(src), ...readdirSync(join(src, "plugins")).map((f) => `plugins/${f}`)].filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
    const offenders = files.filter((f) => /\._(map|factory|interceptors|args|x|taps|call|callAsync|promise|insert|runRegisterInterceptors|resetCompilation)\b/.test(readFileSync(join(src, f), "utf8")));
    expect(offenders).toEqual([]);
  });

  it("one error-code scheme: every code is FLEDGE_*", async () => {
    const { FetchError } = await import("@fledge/fetch");
    const { CpioError } = await import("@fledge/cpio");
    expect(new FetchError("ECHECKSUM", "u", "m").code).toBe("FLEDGE_CHECKSUM");
    expect(new FetchError("EOFFLINE", "u", "m").code).toBe("FLEDGE_OFFLINE");
    expect(new CpioError("ETRUNC", "m").code).toBe("FLEDGE_TRUNC");
    expect(new core.FledgeError("FLEDGE_X", "m").code).toBe("FLEDGE_X");
    const src = fileURLToPath(new URL(".", import.meta.url));
    const files = [...readdirSync(src), ...readdirSync(join(src, "plugins")).map((f) => `plugins/${f}`)].filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
    const codes = files.flatMap((f) => [...readFileSync(join(src, f), "utf8").matchAll(/new (?:Fledge|Check|Plugin)Error\("([A-Z_]+)"/g)].map((m) => m[1]!));
    expect(codes.length).toBeGreaterThan(10);
    expect(codes.filter((c) => !c.startsWith("FLEDGE_"))).toEqual([]);
  });
});

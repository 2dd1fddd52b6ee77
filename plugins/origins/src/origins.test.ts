import { readFileSync } from "node:fs";
import { testBuild } from "@fledge/core/testing";
import { describe, expect, it } from "vitest";
import { OriginsPlugin, originsPath, type OriginsRecord } from "./index.js";

describe("@fledge/plugin-origins", () => {
  it("writes <artifact>.origins.json with each entry's origin and size, and totals per origin", async () => {
    const t = await testBuild({
      mode: "build",
      files: { "init.sh": "#!/bin/sh\nexec sh\n", "www/index.html": "<h1>hi</h1>\n", "tools/jq": "x".repeat(3000) },
      config: 'version = "1"\n[init]\nnone = true\n[source]\nbusybox = false\n[mappings]\n"./init.sh" = "/init"\n"./www" = "/srv/www"\n"./tools" = "/opt/tools"\n',
      plugins: [new OriginsPlugin()],
    });
    try {
      const path = originsPath(t.result!.artifact.path);
      expect(t.result!.outputs.map((o) => o.path)).toContain(path);
      const rec = JSON.parse(readFileSync(path, "utf8")) as OriginsRecord;
      expect(rec.artifact.sha256).toBe(t.result!.artifact.sha256);
      const by = new Map(rec.entries.map((e) => [e.path, e]));
      expect(by.get("/srv/www/index.html")).toEqual({ path: "/srv/www/index.html", type: "file", origin: "mapping:./www", size: 12 });
      expect(by.get("/opt/tools/jq")).toMatchObject({ origin: "mapping:./tools", size: 3000 });
      expect(by.get("/dev/console")).toMatchObject({ origin: "skeleton", type: "char" });
      expect(rec.totals[0]).toEqual({ origin: "mapping:./tools", entries: expect.any(Number), size: 3000 });
      // every entry of the artifact is in the record
      expect(rec.entries.length).toBe(t.archive!.length);
    } finally {
      await t.cleanup();
    }
  });
});

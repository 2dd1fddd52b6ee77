import { describe, expect, it } from "vitest";
import { formatProgress } from "./progress.js";

describe("formatProgress", () => {
  it("draws a bar, amounts, percentage and rate for downloads", () => {
    expect(formatProgress({ kind: "fetch", label: "busybox", current: 1024 * 1024, total: 2 * 1024 * 1024, rate: 512 * 1024 })).toBe("fetch busybox [##########----------] 1.0 MiB / 2.0 MiB (50%) 512.0 KiB/s");
    expect(formatProgress({ kind: "fetch", label: "kestrel", current: 300 })).toBe("fetch kestrel 300 B");
    expect(formatProgress({ kind: "archive", label: "entries", current: 3, total: 10 })).toBe("archive entries 3/10");
  });
});

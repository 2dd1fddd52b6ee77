import { describe, expect, it } from "vitest";
import { escapeName, parseSize } from "./commands/inspect.js";

describe("inspect helpers", () => {
  it("escapes what could forge a line or drive a terminal, and nothing else", () => {
    expect(escapeName("usr/bin/ls")).toBe("usr/bin/ls");
    expect(escapeName("café/ünïcode ✓")).toBe("café/ünïcode ✓");
    expect(escapeName("a\nb\tc\rd\\e")).toBe("a\\nb\\tc\\rd\\\\e");
    expect(escapeName("x\x1b[2J\x07\x00\x7f\x9b")).toBe("x\\e[2J\\x07\\x00\\x7f\\x9b");
    expect(escapeName("evil\u202egnp.exe\u2028")).toBe("evil\\u{202e}gnp.exe\\u{2028}");
  });

  it("reads sizes with K, M, G suffixes and refuses anything else", () => {
    expect(parseSize("4G")).toBe(4 * 2 ** 30);
    expect(parseSize("100M")).toBe(100 * 2 ** 20);
    expect(parseSize("512k")).toBe(512 * 1024);
    expect(parseSize("1.5GiB")).toBe(1.5 * 2 ** 30);
    expect(parseSize("1000")).toBe(1000);
    expect(() => parseSize("lots")).toThrow(/--max-size wants a size/);
    expect(() => parseSize("0")).toThrow(/at least 1 byte/);
  });
});

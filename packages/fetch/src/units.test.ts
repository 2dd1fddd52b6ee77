import { describe, expect, it } from "vitest";
import { parseRetryAfter } from "./http.js";
import { applyMirrors, parseMirrors } from "./mirrors.js";
import { normalizeSha256, parseChecksums } from "./sha.js";

describe("parseMirrors / applyMirrors", () => {
  it("parses comma-separated from=to pairs, splitting at the first =", () => {
    expect(parseMirrors(" https://a/=http://m/a/ , https://b/x?y=1=file:///srv/b/,")).toEqual([
      { from: "https://a/", to: "http://m/a/" },
      { from: "https://b/x?y=1", to: "file:///srv/b/" },
    ]);
    expect(parseMirrors(undefined)).toEqual([]);
  });
  it("names a malformed pair", () => {
    expect(() => parseMirrors("https://a/")).toThrow('FLEDGE_MIRRORS: "https://a/" is not a from=to pair');
    expect(() => parseMirrors("=http://x/")).toThrow(/not a from=to pair/);
  });
  it("takes the longest prefix of the first list that matches", () => {
    const env = [{ from: "https://a/", to: "http://env/" }];
    const cfg = [
      { from: "https://a/", to: "http://cfg/" },
      { from: "https://b/", to: "http://cfg-b/" },
      { from: "https://b/deep/", to: "http://cfg-deep/" },
    ];
    expect(applyMirrors("https://a/f", env, cfg).url).toBe("http://env/f");
    expect(applyMirrors("https://b/deep/f", env, cfg).url).toBe("http://cfg-deep/f");
    expect(applyMirrors("https://c/f", env, cfg)).toEqual({ url: "https://c/f" });
  });
});

describe("checksums", () => {
  it("normalises sha256:<HEX> and bare hex; refuses anything else", () => {
    const hex = "AB".repeat(32);
    expect(normalizeSha256(`SHA256:${hex}`)).toBe(hex.toLowerCase());
    expect(normalizeSha256(` ${hex} `)).toBe(hex.toLowerCase());
    expect(() => normalizeSha256("md5:abc")).toThrow(/not a sha256/);
    expect(() => normalizeSha256("ab".repeat(31))).toThrow(/not a sha256/);
  });
  it("reads sha256sum output: text and binary mode, ./ prefixes, comments", () => {
    const a = "a".repeat(64);
    const b = "B".repeat(64);
    expect(parseChecksums(`# sums\n${a}  kestrel\r\n${b} *./volar\n\nnot a line\n`)).toEqual(
      new Map([
        ["kestrel", a],
        ["volar", b.toLowerCase()],
      ]),
    );
  });
});

describe("parseRetryAfter", () => {
  it("reads delta-seconds and HTTP dates", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT"))).toBe(10_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import { parse } from "smol-toml";
import { indexKeys, locateKey } from "./locate.js";
import { parseKeyPath } from "./place.js";

const TEXT = [
  "#:schema ./fledge.schema.json", // 1
  'version = "1"', // 2
  "  strategy   =   'initramfs'  # indented", // 3
  "", // 4
  "[ agent ]", // 5
  'source_strategy = "release"', // 6
  'description = """', // 7
  "version = not a key, inside a string", // 8
  '"""', // 9
  "", // 10
  "[source.build_args]", // 11
  'GO = "1"', // 12
  "", // 13
  "[mappings]", // 14
  '"./my app" = "/usr/bin/app"', // 15
  "'./lit' = \"/lit\"", // 16
  '"./esc\\u0041" = "/esc"', // 17
  "", // 18
  "[output]", // 19
  "arch.x = 1", // 20
  "list = [", // 21
  "  'level = 3',", // 22
  "]", // 23
  'inline = { a = 1, "b c" = 2 }', // 24
  "", // 25
  "[[network.expose]]", // 26
  "port = 1", // 27
  "[[network.expose]]", // 28
  "port = 2", // 29
].join("\n");

describe("locateKey", () => {
  const at = (path: string) => {
    const p = locateKey(TEXT, parseKeyPath(path));
    return p && `${p.line}:${p.column}`;
  };

  it("finds top-level keys, also indented", () => {
    expect(at("version")).toBe("2:1");
    expect(at("strategy")).toBe("3:3");
  });
  it("finds table headers and keys under them, even with spaces in the header", () => {
    expect(at("agent")).toBe("5:1");
    expect(at("agent.source_strategy")).toBe("6:1");
  });
  it("does not read keys inside multi-line strings or arrays", () => {
    expect(at("agent.version")).toBe("5:1"); // falls back to the table, not line 8
    expect(at("output.level")).toBe("19:1");
  });
  it("finds sub-tables and their keys", () => {
    expect(at("source.build_args.GO")).toBe("12:1");
    expect(at("source")).toBe("11:1");
  });
  it("finds quoted, literal and escaped keys in [mappings]", () => {
    expect(at('mappings."./my app"')).toBe("15:1");
    expect(at('mappings."./lit"')).toBe("16:1");
    expect(at('mappings."./escA"')).toBe("17:1");
  });
  it("finds dotted keys and the keys of one-line inline tables", () => {
    expect(at("output.arch")).toBe("20:1");
    expect(at("output.arch.x")).toBe("20:1");
    expect(at("output.inline.a")).toBe("24:12");
    expect(at('output.inline."b c"')).toBe("24:19");
  });
  it("counts [[array tables]]", () => {
    expect(at("network.expose[0].port")).toBe("27:1");
    expect(at("network.expose[1].port")).toBe("29:1");
    expect(at("network.expose")).toBe("26:1");
  });
  it("falls back to the closest written parent, or nothing", () => {
    expect(at("agent.path")).toBe("5:1");
    expect(at("plugins")).toBeUndefined();
  });
  it("the text it indexes is valid TOML (positions are for real documents)", () => {
    expect(() => parse(TEXT)).not.toThrow();
    expect(indexKeys(TEXT).size).toBeGreaterThan(10);
  });
});

describe("parseKeyPath", () => {
  it("splits what keyPathOf joins", () => {
    expect(parseKeyPath('mappings."./a.b"')).toEqual(["mappings", "./a.b"]);
    expect(parseKeyPath("network.expose[0].port")).toEqual(["network", "expose", 0, "port"]);
    expect(parseKeyPath('labels."volant.plugin"')).toEqual(["labels", "volant.plugin"]);
  });
});

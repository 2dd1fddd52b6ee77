import { describe, expect, it } from "vitest";
import { RootfsTree, imagePath } from "./tree.js";
import { mappedFileMode } from "./modes.js";

describe("RootfsTree", () => {
  it("creates parents as 0755 directories and sorts bytewise with parents first", () => {
    const t = new RootfsTree();
    t.addFile("/usr/bin/zz", "z");
    t.addFile("/a-b", "x");
    t.addFile("/a/b", "y");
    expect(t.paths()).toEqual(["/a", "/a-b", "/a/b", "/usr", "/usr/bin", "/usr/bin/zz"]);
    expect(t.get("/usr")).toEqual({ type: "dir", mode: 0o755 });
  });

  it("a later entry replaces an earlier one; a directory replaced by a file loses its children", () => {
    const t = new RootfsTree();
    t.addFile("/etc/x/y", "1");
    t.addFile("/etc/x", "file now");
    expect(t.paths()).toEqual(["/etc", "/etc/x"]);
    t.symlink("/bin/sh", "busybox");
    t.addFile("/bin/sh", "real sh", 0o755);
    expect(t.get("/bin/sh")?.type).toBe("file");
  });

  it("mkdir keeps the contents of an existing directory", () => {
    const t = new RootfsTree();
    t.addFile("/tmp/a", "1");
    t.mkdir("/tmp", 0o1777);
    expect(t.paths()).toEqual(["/tmp", "/tmp/a"]);
    expect(t.get("/tmp")).toEqual({ type: "dir", mode: 0o1777 });
  });

  it("refuses to write through a symlink or under a file", () => {
    const t = new RootfsTree();
    t.symlink("/lib", "/etc");
    expect(() => t.addFile("/lib/passwd", "x")).toThrow(/\/lib is a symlink/);
    t.addFile("/f", "x");
    expect(() => t.addFile("/f/g", "x")).toThrow(/\/f is a file/);
  });

  it("refuses relative paths, .. and NUL", () => {
    expect(() => imagePath("etc/x")).toThrow(/absolute/);
    expect(() => imagePath("/etc/../../x")).toThrow(/\.\./);
    expect(() => imagePath("/a\0b")).toThrow(/NUL/);
    expect(imagePath("/usr//bin/")).toBe("/usr/bin");
  });

  it("converts to relative cpio entries", () => {
    const t = new RootfsTree();
    t.device("/dev/console", "char", 5, 1, 0o600);
    t.symlink("/bin/sh", "busybox");
    expect(t.toCpioEntries()).toEqual([
      { path: "bin", type: "dir", mode: 0o755, uid: undefined, gid: undefined },
      { path: "bin/sh", type: "symlink", mode: 0o777, target: "busybox", uid: undefined, gid: undefined },
      { path: "dev", type: "dir", mode: 0o755, uid: undefined, gid: undefined },
      { path: "dev/console", type: "char", mode: 0o600, major: 5, minor: 1, uid: undefined, gid: undefined },
    ]);
  });
});

describe("mappedFileMode (FHS rules)", () => {
  it.each([
    [0o744, "/etc/x", 0o755, "any execute bit gives 0755"],
    [0o700, "/etc/x", 0o755, "0700 becomes 0755, as git does"],
    [0o777, "/etc/x", 0o755, "no group/other write from the host (issue 11)"],
    [0o775, "/srv/app", 0o755, "a umask 002 copy gives the same mode as a umask 022 one"],
    [0o4755, "/usr/bin/su", 0o755, "no setuid from the host"],
    [0o2711, "/etc/x", 0o755, "no setgid from the host"],
    [0o1777, "/etc/x", 0o755, "no sticky bit from the host"],
    [0o666, "/etc/x", 0o644, "no group/other write on data either"],
    [0o6644, "/etc/x", 0o644, "setuid/setgid without x stay out"],
    [0o644, "/usr/bin/app", 0o755, "under a bin directory"],
    [0o600, "/opt/sbin/tool", 0o755, "under /opt/sbin"],
    [0o644, "/usr/lib/libfoo.so.1.2", 0o755, "a shared library under a lib directory"],
    [0o644, "/usr/lib/libfoo.a", 0o644, "a static library is not executable"],
    [0o644, "/srv/www/index.html", 0o644, "data"],
    [0o600, "/etc/secret", 0o644, "everything else 0644"],
    [0o644, "/init", 0o755, "/init is what the kernel executes"],
  ])("%o at %s → %o (%s)", (host, dest, want) => {
    expect(mappedFileMode(host, dest)).toBe(want);
  });
});

import { describe, expect, it } from "vitest";
import { imageDefaults } from "./defaults.js";
import { parseConfig } from "./image.js";
import { describeReference, isLoopbackHost, parseReference, registryBaseUrl } from "./reference.js";

describe("parseReference", () => {
  it("normalises Docker Hub names as docker does", () => {
    expect(describeReference(parseReference("nginx:alpine"))).toBe("docker.io/library/nginx:alpine");
    expect(describeReference(parseReference("nginx"))).toBe("docker.io/library/nginx:latest");
    expect(describeReference(parseReference("bitnami/redis:7"))).toBe("docker.io/bitnami/redis:7");
    expect(describeReference(parseReference("docker.io/nginx"))).toBe("docker.io/library/nginx:latest");
    expect(describeReference(parseReference("index.docker.io/library/nginx:1"))).toBe("docker.io/library/nginx:1");
    expect(describeReference(parseReference("docker://nginx:alpine"))).toBe("docker.io/library/nginx:alpine");
  });

  it("reads host:port, nested repositories, digests, and tag plus digest", () => {
    const d = "sha256:" + "a".repeat(64);
    expect(parseReference("127.0.0.1:5000/team/app:1.2")).toMatchObject({ transport: "registry", registry: "127.0.0.1:5000", repository: "team/app", tag: "1.2" });
    expect(parseReference(`localhost/app@${d}`)).toMatchObject({ registry: "localhost", repository: "app", digest: d, tag: undefined });
    expect(parseReference(`ghcr.io/o/r:v1@${d}`)).toMatchObject({ registry: "ghcr.io", repository: "o/r", tag: "v1", digest: d });
    expect(parseReference("[::1]:5000/app")).toMatchObject({ registry: "[::1]:5000", repository: "app", tag: "latest" });
  });

  it("reads oci: layouts and docker-archive: tarballs relative to fledge.toml", () => {
    expect(parseReference("oci:./layout:v1", "/proj")).toMatchObject({ transport: "oci", path: "/proj/layout", ref: "v1" });
    expect(parseReference("oci:/abs/layout", "/proj")).toMatchObject({ transport: "oci", path: "/abs/layout", ref: undefined });
    expect(parseReference("docker-archive:img.tar", "/proj")).toMatchObject({ transport: "docker-archive", path: "/proj/img.tar" });
    expect(parseReference("docker-archive:img.tar:nginx:alpine", "/proj")).toMatchObject({ ref: "nginx:alpine" });
    expect(parseReference("docker-archive:img.tar:@1", "/proj")).toMatchObject({ index: 1 });
  });

  it("refuses what is not a reference, saying why", () => {
    expect(() => parseReference("Nginx/App:1")).toThrow(/lowercase/);
    expect(() => parseReference("nginx:-bad")).toThrow(/tag "-bad" is not valid/);
    expect(() => parseReference("nginx@sha256:abc")).toThrow(/not a sha256 digest/);
    expect(() => parseReference("https://registry.example.com/v2/app")).toThrow(/is a URL/);
    expect(() => parseReference("oci-archive:x.tar")).toThrow(/not supported/);
    expect(() => parseReference("")).toThrow(/empty/);
    expect(() => parseReference("a b")).toThrow(/white space/);
  });

  it("uses plain HTTP only for loopback registries", () => {
    expect(isLoopbackHost("127.0.0.1:5000")).toBe(true);
    expect(isLoopbackHost("localhost")).toBe(true);
    expect(isLoopbackHost("[::1]:5000")).toBe(true);
    expect(isLoopbackHost("10.0.0.1:5000")).toBe(false);
    expect(registryBaseUrl("127.0.0.1:5000")).toBe("http://127.0.0.1:5000");
    expect(registryBaseUrl("registry.example.com")).toBe("https://registry.example.com");
    expect(registryBaseUrl("docker.io")).toBe("https://registry-1.docker.io");
  });
});

describe("imageDefaults", () => {
  const cfg = (config: Record<string, unknown>) => parseConfig(Buffer.from(JSON.stringify({ config, rootfs: { type: "layers", diff_ids: [] } })), "test");
  it("Entrypoint + Cmd, Env, WorkingDir and the one exposed port", () => {
    expect(imageDefaults(cfg({ Entrypoint: ["/docker-entrypoint.sh"], Cmd: ["nginx", "-g", "daemon off;"], Env: ["PATH=/usr/bin", "A=b=c", "UNSET"], WorkingDir: "/srv", ExposedPorts: { "80/tcp": {} } }), "x")).toEqual({
      entrypoint: ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"],
      env: { PATH: "/usr/bin", A: "b=c" },
      workdir: "/srv",
      baseUrl: "http://127.0.0.1:80",
      notes: [],
    });
    expect(imageDefaults(cfg({ Cmd: ["redis-server"] }), "x").entrypoint).toEqual(["redis-server"]);
  });
  it("several ports or a non-root user get a note instead of a guess", () => {
    const d = imageDefaults(cfg({ ExposedPorts: { "80/tcp": {}, "443/tcp": {} }, User: "1000" }), "img");
    expect(d.baseUrl).toBeUndefined();
    expect(d.notes.join("\n")).toMatch(/several TCP ports \(443\/tcp, 80\/tcp\)/);
    expect(d.notes.join("\n")).toMatch(/runs as user "1000"/);
  });
});

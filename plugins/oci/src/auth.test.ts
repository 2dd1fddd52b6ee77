import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { authFiles, findCredentials, normaliseAuthKey, parseChallenges } from "./auth.js";

const work = mkdtempSync(join(tmpdir(), "fledge-oci-auth-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("parseChallenges", () => {
  it("reads Docker Hub's bearer challenge and basic ones, quoted values with commas and escapes", () => {
    expect(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"')).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/nginx:pull" } },
    ]);
    expect(parseChallenges(['Basic realm="Registry Realm"', 'Bearer realm="https://x/t",scope="a,b",error="in\\"sufficient"'])).toEqual([
      { scheme: "basic", params: { realm: "Registry Realm" } },
      { scheme: "bearer", params: { realm: "https://x/t", scope: "a,b", error: 'in"sufficient' } },
    ]);
    expect(parseChallenges(undefined)).toEqual([]);
  });
});

describe("findCredentials", () => {
  it("normalises docker's and containers' keys", () => {
    expect(normaliseAuthKey("https://index.docker.io/v1/")).toBe("docker.io");
    expect(normaliseAuthKey("registry-1.docker.io")).toBe("docker.io");
    expect(normaliseAuthKey("http://127.0.0.1:5000")).toBe("127.0.0.1:5000");
    expect(normaliseAuthKey("Quay.io/team/")).toBe("quay.io/team");
  });

  it("follows the containers-auth.json order, the most specific key, and docker's config last", async () => {
    const home = join(work, "h1");
    mkdirSync(join(home, ".docker"), { recursive: true });
    mkdirSync(join(home, ".config", "containers"), { recursive: true });
    writeFileSync(join(home, ".docker", "config.json"), JSON.stringify({ auths: { "https://index.docker.io/v1/": { auth: b64("hubuser:hubpass") } } }));
    writeFileSync(join(home, ".config", "containers", "auth.json"), JSON.stringify({ auths: { "quay.io": { auth: b64("q:1") }, "quay.io/team": { auth: b64("team:2") } } }));
    const env = { HOME: home };
    expect(authFiles(env)).toEqual([join(home, ".config", "containers", "auth.json"), join(home, ".docker", "config.json")]);
    expect((await findCredentials("docker.io", "library/nginx", env)).credential).toMatchObject({ username: "hubuser", password: "hubpass", source: join(home, ".docker", "config.json") });
    expect((await findCredentials("quay.io", "team/app", env)).credential).toMatchObject({ username: "team", password: "2" });
    expect((await findCredentials("quay.io", "other/app", env)).credential).toMatchObject({ username: "q" });
    expect((await findCredentials("ghcr.io", "a/b", env)).credential).toBeUndefined();
  });

  it("runs a credential helper (credHelpers, then credsStore) and says when it is missing", async () => {
    const home = join(work, "h2");
    const bin = join(work, "bin");
    mkdirSync(join(home, ".docker"), { recursive: true });
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "docker-credential-fake"), '#!/bin/sh\nread server\necho "{\\"ServerURL\\":\\"$server\\",\\"Username\\":\\"helper-$server\\",\\"Secret\\":\\"s3\\"}"\n', { mode: 0o755 });
    writeFileSync(join(home, ".docker", "config.json"), JSON.stringify({ credHelpers: { "registry.example.com": "fake", "other.example.com": "absent" }, credsStore: "fake" }));
    const env = { HOME: home, PATH: `${bin}:${process.env.PATH}` };
    expect((await findCredentials("registry.example.com", "x", env)).credential).toMatchObject({ username: "helper-registry.example.com", password: "s3" });
    expect((await findCredentials("docker.io", "library/x", env)).credential).toMatchObject({ username: "helper-https://index.docker.io/v1/" });
    const missing = await findCredentials("other.example.com", "x", env);
    expect(missing.credential).toBeUndefined();
    expect(missing.notes.join("\n")).toMatch(/docker-credential-absent is not installed/);
  });
});

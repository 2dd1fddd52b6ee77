/**
 * The Node versions fledge supports. Keep in step with `engines` in every package.json (a test
 * checks that) and with the README. The one-file executable brings its own Node and skips this.
 */
export const NODE_FLOOR = [20, 18, 1] as const;

/** `undefined` when `version` ("20.20.2") is supported, else the message to print. */
export function unsupportedNode(version: string, execPath: string): string | undefined {
  const have = version.replace(/^v/, "").split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    if (have[i]! > NODE_FLOOR[i]!) return undefined;
    if (have[i]! < NODE_FLOOR[i]!) {
      return `fledge needs Node ${NODE_FLOOR.join(".")} or newer (20.18.1+, 22 or 24); this is Node ${version} at ${execPath}.\n  Install a newer Node, or use the one-file executable (fledge-linux-x64), which brings its own.`;
    }
  }
  return undefined;
}

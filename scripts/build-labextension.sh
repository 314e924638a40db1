#!/usr/bin/env bash
# Rebuilds the prebuilt JupyterLab extension (nbmodal/labextension/, committed and shipped in the
# wheel, so users and CI never need Node) from labextension/, then runs its unit tests.
# Needs Node >= 20 with npm, and the repo's .venv with jupyterlab (its staging dir is the "core"
# that the extension is built against): e.g. bash scripts/quickstart.sh, or
# python -m venv .venv && .venv/bin/pip install jupyterlab.
set -euo pipefail
cd "$(dirname "$0")/../labextension"

if [ ! -x ../.venv/bin/python ] || ! ../.venv/bin/python -c 'import jupyterlab' 2>/dev/null; then
  echo "build-labextension: needs ../.venv with jupyterlab installed" >&2
  exit 1
fi

npm ci --no-audit --no-fund
# Start from nothing: stale lib/ or tsbuildinfo could skip compiling, and old hashed bundles in
# the output would pile up.
npm run clean
npm run build
npm test
echo "build-labextension: built $(cd ../nbmodal/labextension && pwd)"

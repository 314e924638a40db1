#!/usr/bin/env bash
# The README's first command: sets up .venv with nbmodal, then executes the
# quickstart notebook headless on the embedded local agent, streaming its
# output here and saving notebooks/01-quickstart.executed.ipynb.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[examples]"
exec .venv/bin/nbmodal run notebooks/01-quickstart.ipynb

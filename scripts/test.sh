#!/usr/bin/env bash
# The README's test command: sets up .venv with nbmodal and its test
# dependencies, then runs the whole suite (real kernels, a real local agent).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
bash scripts/install-system-deps.sh   # sshd and iproute2 for the SSH host tests
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
exec .venv/bin/python -m pytest "$@"

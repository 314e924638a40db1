"""The sidebar's TypeScript unit tests (labextension/: formatting and panel state), run with npm."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

LABEXTENSION = Path(__file__).resolve().parents[1] / "labextension"


def npm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["npm", *args, "--no-audit", "--no-fund"], cwd=LABEXTENSION, capture_output=True,
                          text=True, timeout=600)


def test_the_panels_typescript_unit_tests_pass():
    if shutil.which("npm") is None:
        pytest.fail("npm is needed for the sidebar's unit tests (Node.js >= 20 with npm)")
    lock, installed = LABEXTENSION / "package-lock.json", LABEXTENSION / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = npm("ci")
        assert done.returncode == 0, done.stdout + done.stderr
    done = npm("test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and " failed" not in done.stdout

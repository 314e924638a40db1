"""``python -m nbmodal`` is the ``nbmodal`` command, as ``python -m modal`` is Modal's."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_python_dash_m_nbmodal_is_the_command():
    done = subprocess.run([sys.executable, "-m", "nbmodal", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: nbmodal") and "agent" in done.stdout
    wrong = subprocess.run([sys.executable, "-m", "nbmodal", "no-such-verb"], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 2 and "no-such-verb" in wrong.stderr  # argparse's own error, named

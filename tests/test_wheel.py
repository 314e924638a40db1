"""The built wheel carries the prebuilt sidebar: a fresh venv without Node has it enabled."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.agent

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], **kwargs) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_a_fresh_venv_from_the_wheel_has_the_sidebar_and_the_server_extension(tmp_path):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)])
    wheel = next(tmp_path.glob("nbmodal-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("share/jupyter/labextensions/nbmodal-labextension/package.json") for n in names)
    assert any("/labextensions/nbmodal-labextension/static/remoteEntry." in n for n in names)
    assert any(n.endswith("etc/jupyter/jupyter_server_config.d/nbmodal.json") for n in names)

    uv = str(Path(sys.executable).parent / "uv")
    venv = tmp_path / "venv"
    run([uv, "venv", "-q", "--python", sys.executable, str(venv)])
    run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"{wheel}[lab]"])
    # Only the venv on PATH: no Node, as for a user who installed the wheel.
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "JUPYTER_PLATFORM_DIRS": "1"}
    labextensions = run([str(venv / "bin" / "jupyter"), "labextension", "list"], env=env)
    assert "nbmodal-labextension" in labextensions and "enabled" in labextensions and "OK" in labextensions
    server = run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env=env)
    assert "nbmodal.server" in server and "enabled" in server and "OK" in server

"""A Binder rehearsal: binder/ installs, builds and starts as repo2docker would run it.

repo2docker installs binder/requirements.txt from the repository's root, runs binder/postBuild there,
and starts the server through binder/start. Here: a fresh venv (uv, this Python), a copy of the
checkout (its tracked and not-ignored files, as a clone would have them), the venv first on PATH, an
nbmodal home of its own; then two example notebooks run with that venv's `nbmodal run`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.agent

REPO = Path(__file__).resolve().parent.parent
UV = str(Path(sys.executable).parent / "uv")


def checkout_copy(dest: Path) -> Path:
    """The files a clone would have: tracked ones, and new ones git doesn't ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if name.startswith((".venv/", "labextension/node_modules/")) or not (REPO / name).is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return dest


def run(argv: list, cwd: Path, env: dict, timeout: float = 180) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_binder_requirements_postbuild_and_start_then_notebooks_run(tmp_path):
    repo = checkout_copy(tmp_path / "repo")
    for script in ("postBuild", "start"):
        assert os.access(repo / "binder" / script, os.X_OK), f"binder/{script} must be executable"
    venv = tmp_path / "venv"
    home = tmp_path / "nbmodal-home"
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "NBMODAL_HOME": str(home), "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("PYTHONPATH", None)
    run([UV, "venv", "-q", "--python", sys.executable, venv], cwd=tmp_path, env=env)
    # As repo2docker does it: the requirements file, from the repository's root.
    run([UV, "pip", "install", "-q", "--python", venv / "bin" / "python", "-r", "binder/requirements.txt"],
        cwd=repo, env=env, timeout=300)
    installed = run([venv / "bin" / "python", "-c", "import nbmodal, numpy, matplotlib, jupyterlab; "
                     "print(nbmodal.__file__)"], cwd=tmp_path, env=env)
    assert str(venv) in installed  # a real install into the venv, not this checkout

    built = run([repo / "binder" / "postBuild"], cwd=repo, env=env)
    assert "postBuild: nbmodal's sidebar and server extension are enabled" in built
    try:
        run([repo / "binder" / "start", "true"], cwd=repo, env=env)  # starts the agent, then execs `true`
        status = run(["nbmodal", "agent", "status"], cwd=repo, env=env)
        assert "running: pid" in status and f"state {home / 'agent'}" in status, status

        done = run(["nbmodal", "run", "notebooks/01-quickstart.ipynb", "-o", tmp_path / "01.ipynb"],
                   cwd=repo, env=env)
        assert "step 3/3" in done and "caught ZeroDivisionError raised remotely" in done
        done = run(["nbmodal", "run", "notebooks/04-sweep.ipynb", "-o", tmp_path / "04.ipynb"], cwd=repo, env=env)
        assert "8 results from .map" in done and "8 results from the sweep cell" in done
        saved = nbformat.read(tmp_path / "04.ipynb", as_version=4)
        assert any("image/png" in o.get("data", {}) for c in saved.cells if c.cell_type == "code"
                   for o in c.outputs)

        labextensions = run(["jupyter", "labextension", "list"], cwd=repo, env=env)
        line = next((l for l in labextensions.splitlines() if "nbmodal-labextension" in l), "")
        assert "enabled" in line and "OK" in line, labextensions
    finally:
        stopped = subprocess.run(["nbmodal", "agent", "stop"], cwd=repo, env=env, capture_output=True, text=True,
                                 timeout=60)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped

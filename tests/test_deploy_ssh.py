"""A deploy to an SSH host, called by name from another process that has only that host configured."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.ssh

# The first use bootstraps the offline host (its venv from shipped wheels): minutes on a loaded machine.
FIRST_USE_TIMEOUT_S = 600


def _nbmodal(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return _python(home, "-m", "nbmodal.cli", *args, timeout=timeout)


def _python(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBMODAL_HOME": str(home)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_deploy_to_a_host_and_call_it_by_name(ssh_hosts, tmp_path):
    alpha = ssh_hosts.alpha
    home = tmp_path / "home"
    added = _nbmodal(home, "host", "add", alpha.name, alpha.name, "--ssh-config", str(alpha.config_path))
    assert added.returncode == 0, added.stdout + added.stderr
    program = tmp_path / "remote_app.py"
    program.write_text(textwrap.dedent("""
        import nbmodal
        app = nbmodal.App("ssh-deployed")

        @app.function()
        def where(x):
            import os
            return x * x, os.environ.get("NBMODAL_CONTAINER_ID", "")[:2]
    """))
    try:
        deployed = _nbmodal(home, "deploy", "--host", alpha.name, str(program), timeout=FIRST_USE_TIMEOUT_S)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert f"deployed app 'ssh-deployed' v1 on {alpha.name}" in deployed.stdout, deployed.stdout
        # Another process, with the program nowhere in sight: the host supplies the function.
        called = _python(home, "-c", textwrap.dedent("""
            import nbmodal
            where = nbmodal.Function.from_name("ssh-deployed", "where")
            print(where)
            print(where.remote(6))
        """))
        assert called.returncode == 0, called.stdout + called.stderr
        assert f"(deployed on {alpha.name})" in called.stdout and "(36, " in called.stdout, called.stdout
        listed = _nbmodal(home, "app", "list")
        assert "ssh-deployed" in listed.stdout and alpha.name in listed.stdout, listed.stdout
        stopped = _nbmodal(home, "app", "stop", "ssh-deployed")
        assert stopped.returncode == 0 and f"stopped on {alpha.name}" in stopped.stdout, stopped.stderr
        # Nothing ran on a local agent for this client home.
        assert not (home / "agent" / "agent.json").exists()
    finally:
        alpha.forget_nbmodal()  # alpha is shared by the session: tests of a first use expect it fresh

"""A Sandbox on an SSH host: created with ``host=``, it runs there (as the host's user, beside its agent),
exec streams with stdin, files work, and it ends with terminate()."""

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
    env = {**os.environ, "NBMODAL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_sandbox_on_an_ssh_host_runs_exec_there(ssh_hosts, tmp_path):
    alpha = ssh_hosts.alpha
    home = tmp_path / "home"
    added = _nbmodal(home, "host", "add", alpha.name, alpha.name, "--ssh-config", str(alpha.config_path))
    assert added.returncode == 0, added.stdout + added.stderr
    script = tmp_path / "sandbox_on_alpha.py"
    script.write_text(textwrap.dedent(f"""\
        import nbmodal

        sb = nbmodal.Sandbox.create(host={alpha.name!r}, timeout=300)
        assert sb.host == {alpha.name!r}
        p = sb.exec("sh", "-c", "id -un; cat")
        p.stdin.write("echoed\\n")
        p.stdin.write_eof()
        assert p.stdout.read() == "{alpha.user}\\necho" "ed\\n", "not alpha's user"
        assert p.wait() == 0
        with sb.open("hello.txt", "w") as f:
            f.write("from the notebook")
        assert sb.exec("cat", "hello.txt").stdout.read() == "from the notebook"
        assert [s.object_id for s in nbmodal.Sandbox.list(host={alpha.name!r})] == [sb.object_id]
        assert nbmodal.Sandbox.from_id(sb.object_id).host == {alpha.name!r}
        sb.terminate()
        sb.wait(raise_on_termination=False)
        print("sandbox ok", sb.returncode)
        """))
    try:
        env = {**os.environ, "NBMODAL_HOME": str(home)}
        ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=FIRST_USE_TIMEOUT_S, env=env)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "sandbox ok 137" in ran.stdout
        assert not (home / "agent" / "agent.json").exists()  # nothing ran on a local agent
    finally:
        alpha.forget_nbmodal()  # alpha is shared by the session: tests of a first use expect it fresh

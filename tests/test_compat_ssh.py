"""The Modal-style programs of tests/compat/ run unchanged on an SSH host: ``nbmodal run --host alpha
file.py``, from a client home where alpha is the only host (added with ``nbmodal host add``), so the
programs' Dicts, Queues and Volumes live there too. Nothing runs on a local agent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_compat import ARGUMENTS, COMPAT, EXPECTED, PROGRAMS

pytestmark = pytest.mark.ssh

# The first program bootstraps the offline host (its venv from shipped wheels): minutes on a loaded machine.
FIRST_USE_TIMEOUT_S = 600
PROGRAM_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def alpha_home(ssh_hosts, tmp_path_factory) -> Iterator[Path]:
    """A client nbmodal home whose one host is alpha; its agent bootstrapped by a first call."""
    home = tmp_path_factory.mktemp("compat-ssh-home")
    alpha = ssh_hosts.alpha
    added = _nbmodal(home, "host", "add", alpha.name, alpha.name, "--ssh-config", str(alpha.config_path))
    assert added.returncode == 0, added.stdout + added.stderr
    first = _nbmodal(home, "run", "--host", alpha.name, str(COMPAT / "hello_world.py"), timeout=FIRST_USE_TIMEOUT_S)
    assert first.returncode == 0, first.stdout + first.stderr
    yield home
    alpha.forget_nbmodal()  # alpha is shared by the session: tests of a first use expect it fresh


def _nbmodal(home: Path, *args: str, timeout: float = PROGRAM_TIMEOUT_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBMODAL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_runs_unchanged_on_an_ssh_host(alpha_home, program, ssh_hosts):
    done = _nbmodal(alpha_home, "run", "--host", ssh_hosts.alpha.name, str(COMPAT / program),
                    *ARGUMENTS.get(program, []))
    assert done.returncode == 0, f"{program} failed on alpha (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert EXPECTED.get(program, " ok") in done.stdout, done.stdout
    # Everything ran on alpha: no local agent was ever started for this client home.
    assert not (alpha_home / "agent" / "agent.json").exists()


def test_runs_are_on_the_host(alpha_home, ssh_hosts):
    listed = _nbmodal(alpha_home, "runs", "--host", ssh_hosts.alpha.name)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert rows and all(row[1] == ssh_hosts.alpha.name for row in rows), listed.stdout
    assert any(row[2] == "SUCCEEDED" for row in rows), listed.stdout


def test_a_breakpoint_on_an_ssh_host_is_debugged_from_the_terminal(alpha_home, ssh_hosts, tmp_path):
    """pdb in a function running on alpha: its prompt is answered on this terminal (the run's stdin)."""
    script = tmp_path / "debug_me.py"
    script.write_text(textwrap.dedent("""
        import nbmodal as modal

        app = modal.App("debug-on-ssh")

        @app.function()
        def f(x):
            y = x + 1
            breakpoint()
            return y * 2

        @app.local_entrypoint()
        def main():
            print("result", f.remote(20))
    """))
    done = subprocess.run([sys.executable, "-m", "nbmodal.cli", "run", "--host", ssh_hosts.alpha.name, str(script)],
                          input="p y\nn\nc\n", capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S,
                          env={**os.environ, "NBMODAL_HOME": str(alpha_home)})
    assert done.returncode == 0, done.stdout + done.stderr
    # Where it stopped (its line too: the script's text came with the call), `p y`, then `n` returning
    # from f; `c` lets the call return to this terminal.
    assert "debug_me.py(10)f()\n-> return y * 2\n(Pdb) 21\n(Pdb) --Return--\n" in done.stdout, done.stdout
    assert "result 42" in done.stdout

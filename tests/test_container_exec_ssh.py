"""Exec and shells in containers on an SSH host: ``nbmodal shell --host alpha`` in a new container there, and
``nbmodal container exec|logs`` into a warm container there, found by id across the configured hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.ssh

FIRST_USE_TIMEOUT_S = 600  # the first command bootstraps the offline host (its venv from shipped wheels)
COMMAND_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def alpha_home(ssh_hosts, tmp_path_factory) -> Iterator[Path]:
    """A client home whose one host is alpha."""
    home = tmp_path_factory.mktemp("exec-ssh-home")
    alpha = ssh_hosts.alpha
    added = _nbmodal(home, "host", "add", alpha.name, alpha.name, "--ssh-config", str(alpha.config_path))
    assert added.returncode == 0, added.stdout + added.stderr
    yield home
    alpha.forget_nbmodal()  # alpha is shared by the session: tests of a first use expect it fresh


def _nbmodal(home: Path, *args: str, timeout: float = COMMAND_TIMEOUT_S, stdin: bytes | None = None,
             ) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBMODAL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, timeout=timeout,
                          env=env, input=stdin if stdin is not None else b"")


def test_shell_and_exec_in_containers_on_an_ssh_host(alpha_home, ssh_hosts):
    alpha = ssh_hosts.alpha.name
    # A new container on alpha, a command on its terminal, the container stopped afterwards.
    shell = _nbmodal(alpha_home, "shell", "--host", alpha, "--cmd", "tty; echo in-$NBMODAL_CONTAINER_ID; exit 7",
                     timeout=FIRST_USE_TIMEOUT_S)
    assert shell.returncode == 7, shell.stdout + shell.stderr
    out = shell.stdout.decode()
    assert "/dev/pts/" in out and "in-c-" in out, out
    shell_container = out.split("in-")[1].split()[0]

    listed = _nbmodal(alpha_home, "container", "list", "--host", alpha)
    assert listed.returncode == 0 and shell_container not in listed.stdout.decode(), listed.stdout

    # A run leaves a warm container behind on alpha, joined by id without naming the host.
    ran = _nbmodal(alpha_home, "run", "--host", alpha, str(Path(__file__).parent / "compat" / "hello_world.py"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = [line.split() for line in _nbmodal(alpha_home, "container", "list").stdout.decode().splitlines()[1:]]
    warm = next(row[0] for row in rows if row[1] == alpha and row[3] == "idle")
    done = _nbmodal(alpha_home, "container", "exec", warm, "--", "sh", "-c",
                    "echo out-$NBMODAL_CONTAINER_ID; cat; echo err >&2; exit 5", stdin=b"piped in\n")
    assert done.returncode == 5, done.stderr
    assert done.stdout == f"out-{warm}\npiped in\n".encode() and done.stderr == b"err\n"
    logs = _nbmodal(alpha_home, "container", "logs", warm)
    assert logs.returncode == 0 and b"container: ready (pid" in logs.stdout, logs.stderr

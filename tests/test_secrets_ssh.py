"""A named secret created on an SSH host with `nbmodal secret create --host` reaches a function there,
masked in what it prints; the secret's file is owner-only on the host."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.ssh

# The first use bootstraps the offline host (its venv from shipped wheels): minutes on a loaded machine.
FIRST_USE_TIMEOUT_S = 600
VALUE = "ssh-secret-value-4242"


def _nbmodal(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBMODAL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_named_secret_on_an_ssh_host_reaches_a_function_there(ssh_hosts, tmp_path):
    alpha = ssh_hosts.alpha
    home = tmp_path / "home"
    added = _nbmodal(home, "host", "add", alpha.name, alpha.name, "--ssh-config", str(alpha.config_path))
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        created = _nbmodal(home, "secret", "create", "remote-hf", f"HF_TOKEN={VALUE}", "--host", alpha.name,
                           timeout=FIRST_USE_TIMEOUT_S)
        assert created.returncode == 0, created.stdout + created.stderr
        assert f"stored on {alpha.name}" in created.stdout
        listed = _nbmodal(home, "secret", "list", "--host", alpha.name)
        assert "remote-hf" in listed.stdout and "HF_TOKEN" in listed.stdout and VALUE not in listed.stdout
        secrets_dir = alpha.home / ".nbmodal" / "agent" / "secrets"  # the host's files, seen from here
        assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((secrets_dir / "remote-hf.json").stat().st_mode) == 0o600
        script = tmp_path / "use_secret.py"
        script.write_text(textwrap.dedent("""\
            import os
            import nbmodal as modal

            app = modal.App("ssh-secrets")

            @app.function(secrets=[modal.Secret.from_name("remote-hf", required_keys=["HF_TOKEN"])])
            def token_length():
                print("token", os.environ["HF_TOKEN"], flush=True)
                return len(os.environ["HF_TOKEN"])

            @app.local_entrypoint()
            def main():
                print("length", token_length.remote())
            """))
        ran = _nbmodal(home, "run", "--host", alpha.name, str(script))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert f"length {len(VALUE)}" in ran.stdout and "token ***" in ran.stdout
        assert VALUE not in ran.stdout + ran.stderr
        deleted = _nbmodal(home, "secret", "delete", "remote-hf", "--host", alpha.name)
        assert deleted.returncode == 0, deleted.stderr
    finally:
        alpha.forget_nbmodal()  # alpha is shared by the session: tests of a first use expect it fresh

"""A full disk under the agent's state dir: runs and Dict/Queue writes are refused naming ENOSPC, the
SQLite database stays intact, and the agent works again once space returns.

The small filesystem is real: a 16 MiB tmpfs that bubblewrap mounts in a user namespace of its own
(no root needed), with the client and the agent both inside (tests/disk_full_scenario.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.agent, pytest.mark.timeout(120)]

SCENARIO = Path(__file__).with_name("disk_full_scenario.py")
TMPFS_BYTES = 16 * 2**20


def _tmpfs_argv(mount: Path) -> list[str]:
    return ["bwrap", "--unshare-user", "--dev-bind", "/", "/", "--size", str(TMPFS_BYTES), "--tmpfs", str(mount), "--"]


def _small_filesystem_works(mount: Path) -> bool:
    if shutil.which("bwrap") is None:
        return False
    trial = subprocess.run([*_tmpfs_argv(mount), "df", "-k", str(mount)], capture_output=True, text=True, timeout=30)
    return trial.returncode == 0 and str(TMPFS_BYTES // 1024) in trial.stdout


def test_a_full_state_dir_refuses_with_enospc_keeps_the_database_and_recovers(tmp_path):
    mount = tmp_path / "home"
    mount.mkdir()
    if not _small_filesystem_works(mount):
        pytest.skip("bubblewrap can't mount a sized tmpfs in a user namespace here")
    env = {**os.environ, "NBMODAL_HOME": str(mount), "NBMODAL_SANDBOX": "0", "NBMODAL_CONTAINER_PIDS_MAX": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SCENARIO.parent.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([*_tmpfs_argv(mount), sys.executable, str(SCENARIO)], env=env, capture_output=True,
                          text=True, timeout=100)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["before"] == 42
    for what in ("dict_put", "queue_put", "run"):
        assert "ENOSPC" in found[what] and "is full" in found[what], (what, found[what])
    assert "no run can start" in found["run"]
    assert found["dict_a_while_full"] == "before" and found["queue_len_while_full"] == 1
    assert found["integrity"] == "ok"
    assert found["after"] == 42
    assert found["dict_after"] == ["before", 300_000] and found["queue_after"] == ["first", "second"]

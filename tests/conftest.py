"""Shared fixtures: an isolated nbmodal home (its own agent) per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["sshhosts", "slurmcluster"]  # real sshd test hosts; a real single-node Slurm cluster


@pytest.fixture(scope="session", autouse=True)
def nbmodal_home(tmp_path_factory) -> Path:
    """Every kernel, client and agent of the test session uses this home."""
    home = tmp_path_factory.mktemp("nbmodal-home")
    previous = os.environ.get("NBMODAL_HOME")
    os.environ["NBMODAL_HOME"] = str(home)
    # Containers scale down quickly so stale ones don't pile up across tests.
    os.environ.setdefault("NBMODAL_SCALEDOWN_WINDOW", "120")
    yield home
    from nbmodal._runtime.local_agent import stop_local_agent

    stop_local_agent(home / "agent")
    if previous is None:
        os.environ.pop("NBMODAL_HOME", None)
    else:
        os.environ["NBMODAL_HOME"] = previous


@pytest.fixture()
def agent_address():
    """The running local agent (started if needed)."""
    from nbmodal._runtime.local_agent import ensure_local_agent

    return ensure_local_agent()

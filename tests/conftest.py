"""Shared fixtures: an isolated nbmodal home (its own agent) per test session.

Every test module says what it needs with one category marker (``pytestmark =
pytest.mark.unit`` and so on, declared in pyproject.toml): ``pytest -m unit`` runs
the fast in-process layer alone. A test without a category fails and says so.
Tests that wait for something use ``wait_for`` (tests/waiting.py), never a bare sleep.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["sshhosts", "slurmcluster"]  # real sshd test hosts; a real single-node Slurm cluster

# What a test needs to run; each test has at least one (lint: ruff and mypy, not tests of behaviour).
CATEGORY_MARKERS = ("unit", "agent", "ssh", "slurm", "browser", "lint")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if not any(item.get_closest_marker(name) for name in CATEGORY_MARKERS):
            item.add_marker(pytest.mark.nbmodal_uncategorised)


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("nbmodal_uncategorised"):
        pytest.fail(f"{item.path.name} has no category marker: add `pytestmark = pytest.mark.unit` (or agent, "
                    f"ssh, slurm, browser: see [tool.pytest.ini_options] markers in pyproject.toml) at its top",
                    pytrace=False)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "nbmodal_uncategorised: set by conftest on a test with no category marker")


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


@pytest.fixture()
def vol():
    """A new volume on the local agent, deleted after the test."""
    import nbmodal

    name = f"v-{os.urandom(3).hex()}"
    volume = nbmodal.Volume.from_name(name, create_if_missing=True)
    yield volume
    try:
        nbmodal.Volume.delete(name)
    except nbmodal.NotFoundError:
        pass

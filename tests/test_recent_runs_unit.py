"""The client's record of where its runs live keeps the newest only; an older id is found by asking."""

from __future__ import annotations

import pytest

from nbmodal._runtime import connection
from nbmodal._runtime.recent_runs import RecentRuns

pytestmark = pytest.mark.unit


def test_the_oldest_runs_fall_out_and_a_run_set_again_is_new_again():
    hosts = RecentRuns(limit=3)
    for n in range(4):
        hosts[f"r-{n}"] = "local"
    assert list(hosts) == ["r-1", "r-2", "r-3"]
    hosts["r-1"] = "gpu1"  # started again elsewhere (a resumed run): the newest now
    hosts["r-4"] = "local"
    assert list(hosts) == ["r-3", "r-1", "r-4"] and hosts["r-1"] == "gpu1"


def test_the_clients_record_is_bounded():
    assert isinstance(connection.run_hosts, RecentRuns) and connection.run_hosts.limit >= 1000

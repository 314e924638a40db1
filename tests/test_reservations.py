"""cpu= and memory=: reserved per container (the request of a (request, limit) pair), pinned cores, waiting
when the host has no room."""

from __future__ import annotations

import os
import time

import pytest

import nbmodal
from kernels import kernel

pytestmark = pytest.mark.agent

app = nbmodal.App("reservations")
CORES = len(os.sched_getaffinity(0))


@app.function(cpu=1)
def one_core():
    import os

    return sorted(os.sched_getaffinity(0))


@app.function(cpu=CORES)
def all_cores(seconds):
    import time

    started = time.time()
    time.sleep(seconds)
    return started, time.time()


def test_a_container_is_pinned_to_its_reserved_cores():
    cores = one_core.remote()
    assert len(cores) == 1 and cores[0] in os.sched_getaffinity(0)


def test_a_request_limit_pair_reserves_its_request():
    @app.function(cpu=(1, CORES), memory=(64, 4096))
    def pinned_with_room():
        import os

        return sorted(os.sched_getaffinity(0))

    cores = pinned_with_room.remote()
    assert len(cores) == 1 and cores[0] in os.sched_getaffinity(0)  # the request is what is pinned


def test_runs_wait_while_their_cores_are_reserved():
    calls = [all_cores.spawn(1.0) for _ in range(2)]
    spans = sorted(call.get(timeout=60) for call in calls)
    assert spans[1][0] >= spans[0][1] - 0.05  # the second waited for the first's cores


def test_requests_a_host_can_never_meet_fail_at_once():
    too_many = app.function(cpu=CORES + 1)(lambda: 1)
    with pytest.raises(nbmodal.ResourcesUnavailableError, match=f"it has {CORES} CPU cores"):
        too_many.remote()
    too_big = app.function(memory=10**8)(lambda: 1)
    with pytest.raises(nbmodal.ResourcesUnavailableError, match=r"memory=100000000 can never be met on this host: "
                                                               r"it has \d+ MiB"):
        too_big.remote()


def test_memory_reservations_add_up(tmp_path):
    with open("/proc/meminfo") as f:
        total_mib = next(int(line.split()[1]) // 1024 for line in f if line.startswith("MemTotal:"))

    @app.function(memory=total_mib // 2 + 1)
    def more_than_half(seconds):
        import time

        started = time.time()
        time.sleep(seconds)
        return started, time.time()

    calls = [more_than_half.spawn(1.0) for _ in range(2)]
    spans = sorted(call.get(timeout=60) for call in calls)
    assert spans[1][0] >= spans[0][1] - 0.05  # two halves don't fit at once
    with kernel(tmp_path) as k:
        ok = k.execute("%%remote cpu=1 memory=64\nimport os\ncores = len(os.sched_getaffinity(0))")
        assert ok["error"] is None and k.execute("print(cores)")["stdout"].strip() == "1"
        bad = k.execute("%%remote memory=lots\n1")
        assert "memory='lots' must be a whole number of MiB" in bad["stderr"]
    started = time.monotonic()
    assert one_core.remote()  # the cells' reservations were released
    assert time.monotonic() - started < 10

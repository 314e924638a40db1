"""Reading a container's pids.events (remote_agent/process_limits.py, PidsCgroup.refused), asked after
every run: the usual one-line file on a fast path, any other form line by line."""

from __future__ import annotations

import pytest

from remote_agent.process_limits import PidsCgroup

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "refused"), [
    ("max 0\n", 0),
    ("max 17\n", 17),
    ("max 5", 5),  # no newline
    ("max 3\nmax.imposed 9\n", 3),  # newer kernels' second line
    ("max.imposed 9\nmax 4\n", 4),
    ("max x\n", 0),
    ("", 0),
])
def test_the_forks_refused_are_read_from_pids_events(tmp_path, text, refused):
    (tmp_path / "pids.events").write_text(text)
    cgroup = PidsCgroup(tmp_path, 40)
    assert cgroup.refused() == refused
    (tmp_path / "pids.events").write_text("max 21\n")  # read again from the start, the file kept open
    assert cgroup.refused() == 21
    cgroup.close()


def test_a_count_over_the_baseline_is_the_verdict_and_is_kept_after_close(tmp_path):
    (tmp_path / "pids.events").write_text("max 2\n")
    cgroup = PidsCgroup(tmp_path, 40)
    cgroup._baseline = cgroup.refused()  # forks refused before the container was ours don't count
    assert cgroup.exceeded() is None
    (tmp_path / "pids.events").write_text("max 5\n")
    verdict = cgroup.exceeded()
    assert verdict is not None and verdict.refused == 3 and verdict.limit == 40
    cgroup.close()
    assert cgroup.exceeded() == verdict

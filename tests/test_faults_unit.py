"""Pure logic of the fault handling: how a container's end is described, the output cap and its
markers, the rotating full log, coalesced output for followers, and pids cgroups (on fake files)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from nbmodal_wire import pb
from remote_agent.exit_status import describe_exit, signal_of
from remote_agent.output_limits import OutputGate, append_rotating
from remote_agent.process_limits import PidsCgroup, ProcessLimiter, _v1_own_path, _v1_pids_mount
from remote_agent.runs import Run

pytestmark = pytest.mark.unit


def test_a_death_names_the_real_signal_or_exit_code():
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV (segmentation fault)"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(-signal.SIGABRT) == "was killed by SIGABRT (aborted)"
    assert describe_exit(3) == "exited with code 3"
    # Under bubblewrap, the worker's signal comes back as 128 + its number; elsewhere that is a code.
    assert describe_exit(139, sandboxed=True) == "was killed by SIGSEGV (segmentation fault)"
    assert describe_exit(139) == "exited with code 139"
    assert describe_exit(3, sandboxed=True) == "exited with code 3"
    assert signal_of(128 + 200, sandboxed=True) is None  # not a signal: an exit code
    assert describe_exit(None) == "ended, with no exit status to tell how"


def test_output_over_the_cap_is_left_out_and_counted():
    gate = OutputGate(cap_bytes=10)
    assert gate.admit(6) and gate.admit(4)
    assert not gate.admit(1)
    assert not gate.admit(3)  # once over, everything after is left out (no holes in what is shown)
    assert (gate.shown_bytes, gate.left_out_bytes, gate.left_out_chunks) == (10, 4, 2)
    log = Path("/state/runs/r-1/output.log")
    assert "over its 10 bytes limit" in gate.first_marker(log) and str(log) in gate.first_marker(log)
    assert "4 bytes of output (2 chunks) was left out" in gate.final_marker(log)


def test_the_full_log_rotates_at_its_cap(tmp_path):
    log = tmp_path / "output.log"
    for _ in range(5):
        append_rotating(log, b"x" * 40, max_bytes=100)
    assert log.stat().st_size <= 100 and (tmp_path / "output.log.1").stat().st_size <= 100
    # 40, 80, then rotated: 40, 80, rotated again: the newest 40 and the 80 before them; the oldest went.
    assert (log.stat().st_size, (tmp_path / "output.log.1").stat().st_size) == (40, 80)
    append_rotating(log, b"y" * 250, max_bytes=100)  # a chunk over the cap keeps its end
    assert log.read_bytes() == b"y" * 100


def test_a_run_shows_output_up_to_its_cap_then_markers_and_keeps_it_all_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_RUN_OUTPUT_CAP_MIB", str(2048 / 2**20))  # 2 KiB

    async def scenario() -> list[pb.RunEvent]:
        run = Run(tmp_path / "r-1", pb.RunInfo(run_id="r-1"), pb.RunRequest())
        for _ in range(40):
            run.emit_output(pb.Output(stream=pb.STDOUT, data=b"z" * 100))
        run.finish(pb.RunFinished(state=pb.SUCCEEDED))
        run.flush()
        return [event async for event in run.follow()]

    events = asyncio.run(scenario())
    from remote_agent import runs

    runs._writer.barrier()
    outputs = [event.output for event in events if event.HasField("output")]
    shown = b"".join(o.data for o in outputs if o.stream == pb.STDOUT)
    assert shown == b"z" * 2000  # twenty chunks fit in 2 KiB; the rest is left out
    markers = b"".join(o.data for o in outputs if o.stream == pb.STDERR).decode()
    assert "left out here" in markers and "2 KiB of output (20 chunks) was left out" in markers
    # A backlog of output of one stream reaches a follower as one event, carrying the last seq.
    assert len([o for o in outputs if o.stream == pb.STDOUT]) == 1
    assert (tmp_path / "r-1" / "output.log").read_bytes() == b"z" * 4000
    assert events[-1].HasField("finished")


def _fake_pids(path: Path, refused: int = 0, procs: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "pids.max").write_text("max\n")
    (path / "pids.events").write_text(f"max {refused}\n")
    (path / "cgroup.procs").write_text(procs)
    return path


def test_a_pids_cgroup_knows_when_its_limit_refused_a_fork_even_after_it_is_gone(tmp_path):
    parent = tmp_path / "nbmodal-containers-1"
    _fake_pids(parent / "c-1", refused=2)  # refusals before the container: not its own
    cgroup = ProcessLimiter(parent, 64, False, "test").for_container("c-1")
    assert cgroup is not None and (parent / "c-1" / "pids.max").read_text() == "64"
    assert cgroup.exceeded() is None
    (parent / "c-1" / "pids.events").write_text("max 7\n")
    assert cgroup.exceeded() is not None and cgroup.exceeded().refused == 5
    assert "limit of 64 processes (5 forks refused" in cgroup.exceeded().message()
    cgroup.close()
    assert cgroup.exceeded() is not None  # asked after its run ended: still known


def test_a_spawned_container_joins_its_pids_cgroup_before_it_runs(tmp_path):
    cgroup = PidsCgroup(_fake_pids(tmp_path / "c-2"), 64)
    argv = cgroup.wrap_argv(["python", "-m", "remote_agent.worker"])
    assert argv[:3] == ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"']
    assert argv[3] == str(tmp_path / "c-2" / "cgroup.procs") and argv[4:] == ["python", "-m", "remote_agent.worker"]


def test_the_v1_pids_hierarchy_is_found_in_mountinfo(tmp_path):
    (tmp_path / "mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n")
    (tmp_path / "cgroup").write_text("8:pids:/user/agent\n4:memory:/x\n0::/\n")
    assert _v1_pids_mount(tmp_path) == Path("/sys/fs/cgroup/pids")
    assert _v1_own_path(tmp_path) == "/user/agent"
    (tmp_path / "mountinfo").write_text("31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert _v1_pids_mount(tmp_path) is None

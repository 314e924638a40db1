"""cpu=/memory= as (request, limit), the limits on the wire, how the agent holds a container to them
(the watchdog's decisions over a fake /proc, the cgroup files over a fake cgroup tree), the error a
run over its limit ends with, and Modal's default function timeout. No agent runs here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from IPython.core.error import UsageError

import nbmodal
from nbmodal._remote_options import parse_cell_options
from nbmodal._runtime.invocation import DEFAULT_FUNCTION_TIMEOUT_S, RunOptions, call_request, container_spec
from nbmodal._runtime.resource_limits import split_cpu, split_memory
from nbmodal.exceptions import MemoryLimitExceededError
from nbmodal.remote_cell import CellOptions, run_options
from nbmodal.results import raise_for_state
from nbmodal_wire import pb
from remote_agent.agent import Agent
from remote_agent.limits import (
    MIB,
    CgroupEnforcer,
    MemoryLimitExceeded,
    MemoryWatchdog,
    ProcReader,
    Watch,
    WatchdogEnforcer,
    delegate_cgroup,
    own_cgroup,
    process_tree,
)

pytestmark = pytest.mark.unit

app = nbmodal.App("resources-unit")


# -- cpu= and memory= as Modal takes them -----------------------------------------------------------


def test_a_plain_number_is_a_request_without_a_limit():
    assert split_cpu(2) == (2.0, 0.0) and split_cpu(0.5) == (0.5, 0.0) and split_cpu(None) == (0.0, 0.0)
    assert split_memory(4096) == (4096, 0) and split_memory(None) == (0, 0)


def test_a_pair_is_request_and_limit():
    assert split_cpu((1, 4)) == (1.0, 4.0) and split_cpu([0.25, 0.5]) == (0.25, 0.5)
    assert split_memory((64, 128)) == (64, 128) and split_memory((0, 512)) == (0, 512)
    assert split_memory(1024.0) == (1024, 0)  # a whole float is a whole number of MiB


@pytest.mark.parametrize("value, message", [
    ((128, 64), r"the limit \(64 MiB\) is below the request \(128 MiB\)"),
    ((64, 0), "the limit must be more than 0 MiB"),
    ((1, 2, 3), "a number of MiB or a \\(request, limit\\) pair"),
    (-1, "must not be negative"),
    (100.5, "takes whole MiB"),
])
def test_memory_values_modal_would_refuse_say_why(value, message):
    with pytest.raises(ValueError, match=message):
        split_memory(value)


def test_a_value_that_is_no_number_is_a_type_error_naming_the_keyword():
    with pytest.raises(TypeError, match="cpu= takes a number of CPU cores"):
        split_cpu("2")
    with pytest.raises(TypeError, match="memory= takes a number of MiB"):
        split_memory(True)


def test_the_limits_travel_in_the_container_spec():
    spec = container_spec("", {}, cpu=(1, 4), memory=(64, 128))
    assert (spec.cpu, spec.cpu_limit, spec.memory_mib, spec.memory_limit_mib) == (1.0, 4.0, 64, 128)
    plain = container_spec("", {}, cpu=2, memory=256)
    assert (plain.cpu, plain.cpu_limit, plain.memory_mib, plain.memory_limit_mib) == (2.0, 0.0, 256, 0)
    # A container of another limit is another spec: a warm one is never reused across limits.
    assert container_spec("", {}, memory=(64, 128)) != container_spec("", {}, memory=(64, 256))
    assert pb.ContainerSpec.FromString(spec.SerializeToString()).memory_limit_mib == 128


def test_functions_take_the_pairs():
    @app.function(cpu=(0.5, 2), memory=(64, 128))
    def limited():
        return 1

    assert (limited.spec.cpu, limited.spec.cpu_limit) == (0.5, 2.0)
    assert (limited.spec.memory_mib, limited.spec.memory_limit_mib) == (64, 128)


def test_classes_take_the_pairs_and_with_options_overrides_them():
    @app.cls(memory=(64, 128))
    class Model:
        @nbmodal.method()
        def predict(self, x):
            return x

    assert Model().predict.spec.memory_limit_mib == 128
    bigger = Model.with_options(cpu=(1, 4), memory=(256, 512))().predict
    assert (bigger.spec.cpu, bigger.spec.cpu_limit, bigger.spec.memory_mib, bigger.spec.memory_limit_mib) == (
        1.0, 4.0, 256, 512)


# -- %%remote cpu=REQUEST:LIMIT memory=REQUEST:LIMIT -------------------------------------------------


def test_the_cell_line_spells_a_pair_with_a_colon():
    options = parse_cell_options(["cpu=1:4", "memory=4096:8192"], detach=False)
    assert options.cpu == (1.0, 4.0) and options.memory == (4096, 8192)
    spec = container_spec("", {}, options.cpu, options.memory)
    assert (spec.cpu_limit, spec.memory_limit_mib) == (4.0, 8192)
    plain = parse_cell_options(["cpu=2", "memory=512"], detach=False)
    assert plain.cpu == 2.0 and plain.memory == 512


@pytest.mark.parametrize("token, message", [
    ("memory=8192:4096", "the limit is below the request"),
    ("memory=1:2:3", "REQUEST:LIMIT in MiB, like memory=4096:8192"),
    ("memory=4096:lots", "must be a whole number of MiB"),
    ("cpu=4:1", "the limit is below the request"),
    ("cpu=1:many", "must be a number of cores"),
])
def test_a_malformed_pair_says_how_to_write_it(token, message):
    with pytest.raises(UsageError, match=message):
        parse_cell_options([token], detach=False)


# -- timeout= defaults as in Modal ------------------------------------------------------------------


def _fake_target():
    from nbmodal._runtime.invocation import RunTarget
    from nbmodal._runtime.transfer import BlobTransfer

    client = SimpleNamespace(hello=pb.HelloReply(), label="fake agent")
    connection = SimpleNamespace(name="local", client=lambda: client)
    return RunTarget(connection, client, pb.ContainerSpec(), BlobTransfer(client, None))  # type: ignore[arg-type]


def test_a_function_without_timeout_gets_modals_300_seconds_on_its_request():
    @app.function()
    def unbounded():
        return 1

    assert DEFAULT_FUNCTION_TIMEOUT_S == 300
    request = call_request(_fake_target(), "unbounded", (unbounded.raw_f, (), {}), unbounded.run_options())
    assert request.timeout_s == 300
    assert unbounded.run_options(detach=True).timeout_s == 300  # .spawn() too


def test_an_explicit_timeout_is_kept_and_zero_means_none():
    assert app.function(timeout=3600)(lambda: 1).run_options().timeout_s == 3600
    assert app.function(timeout=0)(lambda: 1).run_options().timeout_s == 0


def test_a_class_without_timeout_gets_the_default_too():
    @app.cls()
    class Model:
        @nbmodal.method()
        def predict(self, x):
            return x

    assert Model().predict.run_options().timeout_s == 300


def test_a_cell_keeps_no_default_timeout():
    assert run_options(CellOptions()).timeout_s == 0
    assert RunOptions().timeout_s == 0


# -- the watchdog's decisions, over a fake /proc ----------------------------------------------------


class FakeProc:
    """A process table: pid -> (parent, resident MiB)."""

    def __init__(self, processes: dict[int, tuple[int, int]]) -> None:
        self.processes = processes

    def parents(self) -> dict[int, int]:
        return {pid: parent for pid, (parent, _) in self.processes.items()}

    def tree(self, root: int) -> list[int]:
        return process_tree(root, self.parents()) if root in self.processes else []

    def rss_bytes(self, pid: int) -> int:
        return self.processes[pid][1] * MIB if pid in self.processes else 0


def test_the_tree_is_the_root_and_all_its_descendants():
    parents = {1: 0, 10: 1, 11: 10, 12: 11, 13: 10, 20: 1}
    assert sorted(process_tree(10, parents)) == [10, 11, 12, 13]
    assert process_tree(99, parents) == [99]


def test_the_real_proc_reader_finds_a_process_tree():
    import subprocess
    import sys

    reader = ProcReader()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        tree = reader.tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        assert process_tree(os.getpid(), reader.parents()).count(child.pid) == 1  # the full-table way agrees
        assert reader.rss_bytes(os.getpid()) > MIB
    finally:
        child.communicate(b"")
    assert reader.tree(child.pid) == [] and reader.rss_bytes(child.pid) == 0  # ended: uses nothing


def test_the_watchdog_sums_the_whole_tree_and_kills_it_once_over_the_limit(monkeypatch):
    killed_pids: list[int] = []
    monkeypatch.setattr("remote_agent.limits._kill_all", lambda pids: killed_pids.extend(pids))
    proc = FakeProc({1: (0, 500), 100: (1, 40), 101: (100, 30), 200: (1, 900)})  # 200: another container
    watchdog = MemoryWatchdog(proc)  # type: ignore[arg-type]
    kills: list[str] = []
    watch = Watch(100, 128 * MIB, lambda: kills.append("killed"))
    watchdog.watches.add(watch)

    watchdog.sample()
    assert watch.verdict is None and watch.peak_bytes == 70 * MIB and not kills  # 40 + 30, not the others

    proc.processes[102] = (101, 100)  # a grandchild allocates: 170 MiB in all
    watchdog.sample()
    assert watch.verdict == MemoryLimitExceeded(limit_mib=128, peak_mib=170)
    assert kills == ["killed"] and sorted(killed_pids) == [100, 101, 102]

    watchdog.sample()  # the verdict stands; nothing is killed twice
    assert kills == ["killed"]
    message = watch.verdict.message()
    assert "memory limit of 128 MiB" in message and "peak 170 MiB" in message


def test_the_peak_is_the_highest_use_seen():
    proc = FakeProc({100: (1, 100)})
    watchdog = MemoryWatchdog(proc)  # type: ignore[arg-type]
    watch = Watch(100, 128 * MIB, lambda: None)
    watchdog.watches.add(watch)
    watchdog.sample()
    proc.processes[100] = (1, 20)
    watchdog.sample()
    assert watch.peak_bytes == 100 * MIB and watch.verdict is None


def test_a_container_that_has_ended_uses_nothing():
    watchdog = MemoryWatchdog(FakeProc({1: (0, 10)}))  # type: ignore[arg-type]
    watch = Watch(100, MIB, lambda: None)
    watchdog.watches.add(watch)
    watchdog.sample()
    assert watch.tree == [] and watch.peak_bytes == 0 and watch.verdict is None


def test_a_spec_without_limits_is_left_alone():
    assert WatchdogEnforcer().for_container("c-1", pb.ContainerSpec(memory_mib=512, cpu=2)) is None
    assert CgroupEnforcer(Path("/nonexistent"), cpu=True).for_container("c-1", pb.ContainerSpec()) is None


# -- cgroup v2, over a fake cgroup tree ---------------------------------------------------------------


def _fake_cgroup(root: Path, controllers: str = "cpu memory pids", procs: str = "4242\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("\n")
    (root / "cgroup.procs").write_text(procs)
    return root


def test_a_containers_cgroup_gets_its_limits_and_joins_before_it_runs(tmp_path):
    parent = tmp_path / "nbmodal-containers-1"
    (parent / "c-1").mkdir(parents=True)
    for name in ("memory.swap.max", "memory.oom.group"):
        (parent / "c-1" / name).write_text("")
    limits = CgroupEnforcer(parent, cpu=True).for_container(
        "c-1", pb.ContainerSpec(memory_mib=64, memory_limit_mib=128, cpu=1, cpu_limit=1.5))
    assert limits is not None
    group = parent / "c-1"
    assert (group / "memory.max").read_text() == str(128 * MIB)
    assert (group / "memory.swap.max").read_text() == "0" and (group / "memory.oom.group").read_text() == "1"
    assert (group / "cpu.max").read_text() == "150000 100000"
    argv = limits.wrap_argv(["python", "-m", "remote_agent.worker"])
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3] == str(group / "cgroup.procs")
    assert argv[4:] == ["python", "-m", "remote_agent.worker"]
    limits.started(4321, lambda: None)  # a forked container joins by pid
    assert (group / "cgroup.procs").read_text() == "4321"


@pytest.fixture(autouse=True)
def cgroupfs_removal(monkeypatch):
    """cgroupfs removes a cgroup's interface files with its directory; a plain directory needs rmtree."""
    monkeypatch.setattr("remote_agent.limits.remove_cgroup", shutil.rmtree)


def test_an_oom_kill_in_the_cgroup_is_the_memory_limit_with_its_peak(tmp_path):
    parent = tmp_path / "p"
    (parent / "c-2").mkdir(parents=True)
    limits = CgroupEnforcer(parent, cpu=False).for_container("c-2", pb.ContainerSpec(memory_limit_mib=128))
    group = parent / "c-2"
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert limits.exceeded() is None  # reached the limit, reclaimed, never killed
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    (group / "memory.peak").write_text(str(128 * MIB))
    assert limits.exceeded() == MemoryLimitExceeded(128, 128)
    (group / "memory.peak").unlink()  # a kernel that keeps no peak: it reached the limit
    assert limits.exceeded() == MemoryLimitExceeded(128, 128)
    limits.close()
    assert not group.exists()


def test_the_agent_delegates_only_a_cgroup_it_has_to_itself(tmp_path):
    own = _fake_cgroup(tmp_path / "shared", procs="4242\n999\n")
    parent, _, reason = delegate_cgroup(own, 4242)
    assert parent is None and "also holds processes other than the agent" in reason

    own = _fake_cgroup(tmp_path / "no-memory", controllers="cpu pids")
    parent, _, reason = delegate_cgroup(own, 4242)
    assert parent is None and "memory controller is not delegated" in reason

    own = _fake_cgroup(tmp_path / "alone")
    parent, cpu, reason = delegate_cgroup(own, 4242)
    assert parent == own / "nbmodal-containers-4242" and reason == ""
    assert (own / "nbmodal-agent-4242" / "cgroup.procs").read_text() == "4242"  # it moved into a leaf
    # pids too: containers' process limits live in the same cgroups (remote_agent/process_limits.py).
    assert (own / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert cpu and (parent / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert not (parent / "probe").exists()  # the probe that tried memory.max is gone


def test_own_cgroup_reads_cgroup_v2_from_proc(tmp_path):
    mount = tmp_path / "cgroup"
    _fake_cgroup(mount / "user.slice" / "agent")
    proc_self = tmp_path / "self"
    proc_self.mkdir()
    (proc_self / "cgroup").write_text("0::/user.slice/agent\n")
    (proc_self / "mountinfo").write_text(
        f"22 1 0:21 / /proc rw - proc proc rw\n41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n")
    assert own_cgroup(proc_self) == mount / "user.slice" / "agent"
    (proc_self / "cgroup").write_text("4:memory:/x\n")  # cgroup v1 only
    assert own_cgroup(proc_self) is None


# -- the run's error, agent side and notebook side ---------------------------------------------------


class _ProcessOverItsLimit:
    def memory_limit_exceeded(self):
        return MemoryLimitExceeded(128, 431)

    def process_limit_exceeded(self):
        return None


def test_a_container_ended_for_its_limit_fails_the_run_with_limit_and_peak():
    run = SimpleNamespace(cancel_requested=False)
    request = pb.RunRequest(timeout_s=300)
    container = SimpleNamespace(process=_ProcessOverItsLimit(), killed_by_agent=False, log_path="x.log")
    finished = Agent._result_of_dead_container(run, request, container, RuntimeError("died"))  # type: ignore[arg-type]
    assert finished.state == pb.FAILED and finished.error.kind == pb.ERROR_MEMORY_LIMIT
    assert "memory limit of 128 MiB (peak 431 MiB)" in finished.error.message

    with pytest.raises(MemoryLimitExceededError, match=r"memory limit of 128 MiB \(peak 431 MiB\)") as caught:
        raise_for_state(finished)
    assert isinstance(caught.value, MemoryError)  # as running out of memory locally would be

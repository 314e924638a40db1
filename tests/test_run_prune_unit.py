"""Which runs an agent forgets (remote_agent/runs.py, RunRegistry._prune): the oldest finished ones, in
batches, never one in progress; runs of an earlier agent count by when they were created."""

from __future__ import annotations

import asyncio

import pytest

from nbmodal_wire import pb
from remote_agent import runs
from remote_agent.runs import RunRegistry, write_info

pytestmark = pytest.mark.unit


def test_the_oldest_finished_runs_go_in_batches_and_running_ones_stay(tmp_path):
    async def scenario() -> list[str]:
        registry = RunRegistry(tmp_path / "runs", keep=10)
        for n in range(11):
            run = registry.create(pb.RunRequest(kind=pb.FUNCTION, label="f()", run_id=f"r-{n:08x}"))
            if n not in (0, 2):  # these two are still running
                run.finish(pb.RunFinished(state=pb.SUCCEEDED))
        assert len(registry.list()) == 11  # within the batch's slack: nothing goes yet
        registry.create(pb.RunRequest(kind=pb.FUNCTION, label="f()", run_id=f"r-{11:08x}"))
        registry.flush_all()
        return sorted(run.id for run in registry.list())

    kept = asyncio.run(scenario())
    assert kept == sorted(f"r-{n:08x}" for n in (0, 2, *range(4, 12)))  # r-1 and r-3: the oldest finished
    # The pruned runs' directories are gone from the runs (kept emptied as spares: remote_agent/run_dirs.py).
    assert sorted(path.name for path in (tmp_path / "runs").iterdir() if path.name != ".spare") == kept


def test_an_earlier_agents_runs_are_forgotten_oldest_first_whatever_their_order_on_disk(tmp_path):
    runs_dir = tmp_path / "runs"
    for n, created in enumerate([5.0, 1.0, 4.0, 2.0, 3.0]):  # r-0 is the newest, r-1 the oldest
        run_dir = runs_dir / f"r-{n:08x}"
        run_dir.mkdir(parents=True)
        write_info(run_dir, pb.RunInfo(run_id=run_dir.name, state=pb.SUCCEEDED, created=created))
    registry = RunRegistry(runs_dir, keep=2)
    runs._writer.barrier()
    assert sorted(run.id for run in registry.list()) == ["r-00000000", "r-00000002"]  # created 5.0 and 4.0


def test_a_burst_of_runs_is_handed_to_the_writer_at_once_and_each_run_is_on_disk(tmp_path, monkeypatch):
    handed: list[set[str]] = []  # the run directories of each hand-over
    hand_over = runs._writer.append_many
    monkeypatch.setattr(runs._writer, "append_many",
                        lambda work: (handed.append({run_dir.name for run_dir, *_ in work}), hand_over(work)))

    async def scenario() -> None:
        registry = RunRegistry(tmp_path / "runs")
        burst = [registry.create(pb.RunRequest(kind=pb.FUNCTION, label="f()")) for _ in range(20)]
        assert handed == [{run.id} for run in burst]  # each new run's record goes at once: never unknown
        handed.clear()
        for run in burst[:15]:  # five still run when the records go out: theirs say so
            run.emit(output=pb.Output(stream=pb.STDOUT, data=b"hi"))
            run.finish(pb.RunFinished(state=pb.SUCCEEDED))
        assert handed == []  # the rest waits (FLUSH_DELAY_S)
        while not handed:
            await asyncio.sleep(runs.FLUSH_DELAY_S / 5)
        runs._writer.barrier()
        # One hand-over (one wake of the writer) for the whole burst (runs of earlier tests' loops may join it).
        assert len(handed) == 1 and {run.id for run in burst[:15]} <= handed[0]
        for n, run in enumerate(burst):
            info = runs.read_info(run.dir)
            assert info is not None and info.state == (pb.SUCCEEDED if n < 15 else pb.PENDING)
            assert [event.seq for event in runs.read_event_log(run.dir / "events.log")] == (
                [1, 2] if n < 15 else [])  # output, finished

    asyncio.run(scenario())

"""Recycled run directories (remote_agent/run_dirs.py): a pruned run's directory, emptied, becomes a new
run's; the layout readers see stays ``runs/<id>/{info.pb,events.log}``, a spare is never read as a run,
and ``info.pb`` is replaced atomically whether or not it is exchanged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from nbmodal_wire import pb
from remote_agent import run_dirs, runs
from remote_agent.runs import RunRegistry, read_event_log, read_info

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _own_pools():
    run_dirs._pools.clear()  # spares of other tests' (removed) directories
    yield
    run_dirs._pools.clear()


def _info(run_id: str, state: int = pb.SUCCEEDED) -> bytes:
    return pb.RunInfo(run_id=run_id, state=state, label=f"{run_id}()").SerializeToString()


def _event(seq: int) -> bytes:
    body = pb.RunEvent(seq=seq, started=pb.RunStarted(run_id="x")).SerializeToString()
    return runs._FRAME.pack(len(body)) + body


def test_a_pruned_runs_directory_becomes_the_next_runs_with_nothing_of_the_old_run(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    old = runs_dir / "r-00000001"
    runs._write_run_dir(old, _event(1) + _event(2), _info("r-00000001", pb.RUNNING), b"some output\n")
    runs._write_run_dir(old, _event(3), _info("r-00000001"), b"")
    inode = os.stat(old).st_ino
    run_dirs.retire(old)
    assert not old.exists()
    spare = runs_dir / run_dirs.SPARE_DIR
    [kept] = os.listdir(spare)
    assert "info.pb" not in os.listdir(spare / kept)  # no reader can take it for a run
    new = runs_dir / "r-00000002"
    runs._write_run_dir(new, _event(1), _info("r-00000002", pb.RUNNING), b"")
    assert os.stat(new).st_ino == inode  # the same directory, renamed
    assert read_info(new).run_id == "r-00000002"
    assert [e.seq for e in read_event_log(new / "events.log")] == [1]  # none of the old run's events
    assert not (new / "output.log").exists()
    runs._write_run_dir(new, _event(2), _info("r-00000002"), b"")
    assert read_info(new).state == pb.SUCCEEDED
    assert [e.seq for e in read_event_log(new / "events.log")] == [1, 2]
    assert os.listdir(spare) == []


def test_info_is_replaced_whole_each_time_exchanged_or_not(tmp_path, monkeypatch):
    run_dir = tmp_path / "r-00000003"
    run_dir.mkdir()
    for n in range(3):
        run_dirs.write_info_file(run_dir, _info("r-00000003", pb.RUNNING if n < 2 else pb.SUCCEEDED))
        assert read_info(run_dir).run_id == "r-00000003"
    assert read_info(run_dir).state == pb.SUCCEEDED
    monkeypatch.setattr(run_dirs, "_exchange_call", None)  # a libc or file system without RENAME_EXCHANGE
    run_dirs.write_info_file(run_dir, pb.RunInfo(run_id="r-00000003", state=pb.FAILED).SerializeToString())
    assert read_info(run_dir).state == pb.FAILED
    # A shorter info after a longer one: cut to its own length, not followed by the old one's tail.
    run_dirs.write_info_file(run_dir, pb.RunInfo(run_id="r-00000003").SerializeToString())
    assert (run_dir / "info.pb").read_bytes() == pb.RunInfo(run_id="r-00000003").SerializeToString()


def test_a_registry_never_loads_a_spare_and_takes_up_those_of_a_dead_agent(tmp_path):
    runs_dir = tmp_path / "runs"
    (runs_dir / run_dirs.SPARE_DIR).mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    leftover = runs_dir / run_dirs.SPARE_DIR / f"{dead}-7"
    leftover.mkdir()
    (leftover / "info.pb").write_bytes(_info("r-0000000a"))  # left half-emptied by a crash
    (leftover / "events.log").write_bytes(_event(1))
    (leftover / "output.log").write_bytes(b"old output")
    live = runs_dir / run_dirs.SPARE_DIR / "1-3"  # pid 1 is alive: a live agent's spare is left to it
    live.mkdir()

    async def scenario() -> list[str]:
        registry = RunRegistry(runs_dir)
        run = registry.create(pb.RunRequest(kind=pb.FUNCTION, label="f()", run_id="r-0000000b"))
        run.finish(pb.RunFinished(state=pb.SUCCEEDED))
        registry.flush_all()
        return [r.id for r in registry.list()]

    assert asyncio.run(scenario()) == ["r-0000000b"]  # the spare's old info was no run
    assert not leftover.exists()  # taken up: it is r-0000000b's directory now
    assert read_info(runs_dir / "r-0000000b").state == pb.SUCCEEDED
    assert [e.seq for e in read_event_log(runs_dir / "r-0000000b" / "events.log")] == [1]  # its result alone
    assert "output.log" not in os.listdir(runs_dir / "r-0000000b")  # the old run's, gone with it
    assert live.exists()


def test_an_info_without_a_run_id_is_no_runs_info(tmp_path):
    (tmp_path / "info.pb").write_bytes(b"")  # a file caught while its inode was being rewritten
    assert read_info(tmp_path) is None


def test_beyond_the_spares_kept_pruned_directories_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dirs, "MAX_SPARES", 2)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run_dirs_made = [runs_dir / f"r-0000001{n}" for n in range(4)]
    for run_dir in run_dirs_made:
        runs._write_run_dir(run_dir, _event(1), _info(run_dir.name), b"out")
        (run_dir / "extra").mkdir()  # more than the usual files: removed all the same
    for run_dir in run_dirs_made:
        run_dirs.retire(run_dir)
    assert sorted(os.listdir(runs_dir)) == [run_dirs.SPARE_DIR]
    assert len(os.listdir(runs_dir / run_dirs.SPARE_DIR)) == 2
    for spare in os.listdir(runs_dir / run_dirs.SPARE_DIR):
        assert sorted(os.listdir(runs_dir / run_dirs.SPARE_DIR / spare)) == ["events.log", "info.pb.tmp"]
        assert (runs_dir / run_dirs.SPARE_DIR / spare / "events.log").stat().st_size == 0


def test_through_many_prunes_every_kept_run_reads_back_as_itself_alone(tmp_path):
    runs_dir = tmp_path / "runs"

    async def scenario() -> list[str]:
        registry = RunRegistry(runs_dir, keep=10)
        for n in range(60):  # five prunes' worth: later runs are made of earlier runs' directories
            run = registry.create(pb.RunRequest(kind=pb.FUNCTION, label=f"f({n})", run_id=f"r-{n:08x}"))
            run.emit(started=pb.RunStarted(run_id=run.id))
            if n % 3 == 0:
                run.emit_output(pb.Output(stream=pb.STDOUT, data=f"out {n}\n".encode()))
            if n % 2 == 0:  # a second write of its info and events, as a run that lasts has
                run.flush()
                runs._writer.barrier()
            run.finish(pb.RunFinished(state=pb.SUCCEEDED if n % 4 else pb.FAILED))
            if n % 7 == 0:
                registry.flush_all()
        registry.flush_all()
        return [run.id for run in registry.list()]

    kept = asyncio.run(scenario())
    assert len(kept) >= 10
    assert len(os.listdir(runs_dir / run_dirs.SPARE_DIR)) > 0  # directories were recycled
    for run_id in kept:
        n = int(run_id[2:], 16)
        info = read_info(runs_dir / run_id)
        assert info is not None and info.run_id == run_id and info.label == f"f({n})"
        assert info.state == (pb.SUCCEEDED if n % 4 else pb.FAILED)
        events = list(read_event_log(runs_dir / run_id / "events.log"))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].started.run_id == run_id and events[-1].HasField("finished")
        output = runs_dir / run_id / "output.log"
        assert (output.read_bytes() if output.exists() else b"") == (f"out {n}\n".encode() if n % 3 == 0 else b"")
    on_disk = sorted(name for name in os.listdir(runs_dir) if name != run_dirs.SPARE_DIR)
    assert on_disk == sorted(kept)
    reloaded = RunRegistry(runs_dir, keep=100)  # a restarted agent reads the same runs, and no spare
    assert sorted(run.id for run in reloaded.list()) == sorted(kept)

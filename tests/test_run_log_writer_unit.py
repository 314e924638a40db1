"""The run logs' writer thread (remote_agent/run_log_writer.py): what waits for it is merged per run,
a pruned run's waiting writes are dropped, and barrier() returns once everything handed over is done."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from remote_agent.run_log_writer import WRITER_NICENESS, RunLogWriter

pytestmark = pytest.mark.unit


class Disk:
    """Records writes and removals; the first write blocks until ``release`` is set (a slow disk)."""

    def __init__(self) -> None:
        self.ops: list[tuple] = []
        self.release = threading.Event()
        self.busy = threading.Event()
        self.backlog = 0
        self._lock = threading.Lock()

    def write(self, run_dir: Path, events, info, output) -> None:
        self.busy.set()
        assert self.release.wait(10), "the test never released the writer"
        with self._lock:
            self.ops.append(("write", run_dir.name, bytes(events), info, bytes(output)))

    def remove(self, run_dir: Path) -> None:
        with self._lock:
            self.ops.append(("remove", run_dir.name))

    def written(self, n: int) -> None:
        with self._lock:
            self.backlog -= n


def handed(disk: Disk, n: int) -> int:
    disk.backlog += n
    return n


def test_work_that_waits_is_merged_per_run_in_order():
    disk = Disk()
    writer = RunLogWriter(disk.write, disk.remove, disk.written)
    writer.append(Path("r-0"), b"first", b"i0", b"")
    assert disk.busy.wait(10)  # the thread is inside the first write: what follows waits
    handed(disk, 5)
    for n in range(3):
        writer.append(Path("r-a"), f"e{n};".encode(), f"info{n}".encode(), f"o{n}".encode())
        handed(disk, 3 + 2)
    writer.append(Path("r-b"), b"b-events", None, b"")
    handed(disk, 8)
    writer.append(Path("r-a"), b"e3;", None, b"")  # no newer info: the newest handed over stays
    handed(disk, 3)
    disk.release.set()
    writer.barrier()
    assert disk.ops == [("write", "r-0", b"first", b"i0", b""),
                        ("write", "r-a", b"e0;e1;e2;e3;", b"info2", b"o0o1o2"),
                        ("write", "r-b", b"b-events", None, b"")]
    assert disk.backlog == 0


def test_a_pruned_run_is_removed_without_its_waiting_writes():
    disk = Disk()
    writer = RunLogWriter(disk.write, disk.remove, disk.written)
    writer.append(Path("r-0"), b"x", None, b"")
    assert disk.busy.wait(10)
    handed(disk, 1)
    writer.append(Path("r-old"), b"never written", b"info", b"out")
    handed(disk, 13 + 3)
    writer.remove(Path("r-old"))
    writer.append(Path("r-old"), b"late", None, b"")  # after its removal: dropped too
    handed(disk, 4)
    disk.release.set()
    writer.barrier()
    assert disk.ops == [("write", "r-0", b"x", None, b""), ("remove", "r-old")]
    assert disk.backlog == 0


def test_barrier_waits_for_what_was_handed_over_before_it():
    disk = Disk()
    writer = RunLogWriter(disk.write, disk.remove, disk.written)
    writer.append(Path("r-1"), b"a", None, b"")
    assert disk.busy.wait(10)
    returned = threading.Event()

    def wait() -> None:
        writer.barrier()
        returned.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not returned.wait(0.2)  # the write it waits for is still blocked
    disk.release.set()
    waiter.join(10)
    assert returned.is_set() and disk.ops == [("write", "r-1", b"a", None, b"")]
    writer.barrier()  # nothing waits: returns at once


def test_what_was_handed_over_is_written_before_the_process_exits(tmp_path):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        from pathlib import Path
        from remote_agent import runs
        run_dir = Path({str(tmp_path)!r}) / "r-exit"
        runs._writer.append(run_dir, b"events", b"info", b"output")
    """)  # and the interpreter exits at once
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert (tmp_path / "r-exit" / "events.log").read_bytes() == b"events"
    assert (tmp_path / "r-exit" / "info.pb").read_bytes() == b"info"


def test_several_removals_are_handed_over_at_once():
    disk = Disk()
    writer = RunLogWriter(disk.write, disk.remove, disk.written)
    writer.append(Path("r-0"), b"x", None, b"")
    assert disk.busy.wait(10)
    handed(disk, 1)
    writer.append(Path("r-a"), b"waiting", None, b"")
    handed(disk, 7)
    writer.remove(Path("r-a"), Path("r-b"), Path("r-c"))
    disk.release.set()
    writer.barrier()  # counts each of them: returns once all are gone
    assert disk.ops == [("write", "r-0", b"x", None, b""), ("remove", "r-a"), ("remove", "r-b"), ("remove", "r-c")]
    assert disk.backlog == 0


def test_the_writer_thread_yields_the_cpu_to_the_event_loop():
    disk = Disk()
    disk.release.set()
    writer = RunLogWriter(disk.write, disk.remove, disk.written)
    writer.append(Path("r-0"), b"e", None, b"")
    writer.barrier()
    assert writer._thread is not None and writer._thread.native_id is not None
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, writer._thread.native_id) == min(19, ours + WRITER_NICENESS)

"""The one thread that writes runs' logs to disk, off the event loop, merging what waits for it.

Each run hands its framed events, its output and its info to this thread (runs.py); creating the files
of a run costs the file system far more than writing them, and on a slow disk a burst of short runs
(a thousand warm calls a second) hands over work faster than it can be done. So work that waits is
merged per run directory: its events and output are appended with one write each, its info written
once (the newest), and a directory whose removal is queued (an old run pruned from the registry)
is removed without first being written. What waits is thereby bounded by the runs the agent keeps,
however far behind the disk is; a run's own writes still reach its files in the order handed over.

    writer = RunLogWriter(write=..., remove=...)
    writer.append(run_dir, events, info, output)
    writer.remove(old_run_dir)
    writer.barrier()   # returns once everything handed over so far is on disk
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

Write = Callable[[Path, bytes | bytearray, bytes | None, bytes | bytearray], None]


@dataclass
class _Pending:
    """What waits for one run directory."""

    events: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)
    info: bytes | None = None
    remove: bool = False


class RunLogWriter:
    """One writer thread (started on first use), its queue merged per run directory."""

    def __init__(self, write: Write, remove: Callable[[Path], None],
                 written: Callable[[int], None] = lambda n: None) -> None:
        self._write = write
        self._remove = remove
        self._written = written  # told the bytes of events and output written (or dropped), for the backlog
        self._lock = threading.Condition(threading.Lock())
        self._pending: dict[Path, _Pending] = {}  # in the order each directory was first handed over
        self._handed = 0  # work items handed over, ever
        self._done = 0  # of those, how many are written (or were merged into one written)
        self._thread: threading.Thread | None = None

    def append(self, run_dir: Path, events: bytes | bytearray, info: bytes | None,
               output: bytes | bytearray = b"") -> None:
        """Append ``events`` to the run's events.log and ``output`` to its output log; replace its info."""
        self.append_many([(run_dir, events, info, output)])

    def append_many(self, work: list[tuple[Path, bytes | bytearray, bytes | None, bytes | bytearray]]) -> None:
        """``append`` for each (run_dir, events, info, output), the thread woken once for all of them."""
        with self._lock:
            handed = 0
            for run_dir, events, info, output in work:
                pending = self._pending.get(run_dir)
                if pending is not None and pending.remove:  # a pruned run's directory is on its way out
                    self._written(len(events) + len(output))
                    continue
                if pending is None:
                    pending = self._pending[run_dir] = _Pending()
                pending.events += events
                pending.output += output
                if info is not None:
                    pending.info = info
                handed += 1
            if handed:
                self._hand_over(handed)

    def remove(self, *run_dirs: Path) -> None:
        """Remove the runs' directories; what still waits to be written there is dropped. Several at once
        are handed over at once: the thread is woken once, not once each (a prune's batch)."""
        with self._lock:
            for run_dir in run_dirs:
                pending = self._pending.pop(run_dir, None)
                if pending is not None:
                    self._written(len(pending.events) + len(pending.output))
                self._pending[run_dir] = _Pending(remove=True)
            if run_dirs:
                self._hand_over(len(run_dirs))

    def barrier(self) -> None:
        """Wait until everything handed over before this call is written."""
        with self._lock:
            target = self._handed
            while self._done < target:
                self._lock.wait()

    def _hand_over(self, items: int = 1) -> None:
        self._handed += items
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="run-log-writer", daemon=True)
            self._thread.start()
            # What was handed over is written before the process exits (a daemon thread runs on during atexit).
            atexit.register(self.barrier)
        self._lock.notify_all()

    def _serve(self) -> None:
        _lower_priority()
        while True:
            with self._lock:
                while not self._pending:
                    self._lock.wait()
                run_dir = next(iter(self._pending))
                pending = self._pending.pop(run_dir)
                handed = self._handed  # everything handed over so far is in what is taken now or still waits
            try:
                if pending.remove:
                    self._remove(run_dir)
                else:
                    self._write(run_dir, pending.events, pending.info, pending.output)
            except Exception:  # the writers log their own I/O errors; this thread must go on regardless
                log.exception("writing the log of run %s failed", run_dir.name)
            finally:
                self._written(len(pending.events) + len(pending.output))
            with self._lock:
                if not self._pending:
                    self._done = handed
                self._lock.notify_all()


# Niceness of this thread (Linux: per thread): creating a run's files costs the file system far more CPU than
# the run itself (run_dirs.py), and a burst of warm calls should not wait for the records of the calls before
# it. Measured on 2 cores, a fresh agent, 3,000 warm calls: p50 0.60-0.66 ms at the agent's priority,
# 0.38-0.53 ms at 10, the event loop's thread preempted 1.5 times a call instead of 2.3. A niceness of 10 still
# gets a tenth of a contended core (19 would get 1.5%): the writer's backlog, bounded as it is, keeps moving.
WRITER_NICENESS = 10


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
    except (OSError, AttributeError):  # not permitted, or not Linux: it writes at the agent's priority
        log.debug("the run-log writer keeps the agent's priority", exc_info=True)

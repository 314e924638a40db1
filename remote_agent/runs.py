"""Runs and their event logs.

Every run's events (start, output, displays, finish) get a sequence number and
are appended to ``runs/<run_id>/events.log`` in the state dir, so replaying,
attaching after a kernel restart and the sidebar all read the same record.
Followers of a live run are woken as events arrive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from nbmodal_wire import pb
from nbmodal_wire.names import RUN_ID, new_run_id  # noqa: F401  (RUN_ID re-exported)
from nbmodal_wire.pids import pid_alive
from remote_agent import request_errors
from remote_agent.output_limits import OUTPUT_LOG, OutputGate, append_rotating, output_cap_bytes, output_log_bytes
from remote_agent.request_errors import RequestError
from remote_agent.run_dirs import SPARE_DIR, adopt_spares, claim_spare, retire, write_file, write_info_file
from remote_agent.run_log_writer import RunLogWriter
from remote_agent.storage import disk_full, no_space_message

log = logging.getLogger(__name__)

_FRAME = struct.Struct("<I")
FINAL_STATES = frozenset({pb.SUCCEEDED, pb.FAILED, pb.CANCELLED, pb.TIMED_OUT, pb.LOST})
# A finished run's results are kept for replay when detached or small; a large
# result of a run whose client was following is delivered once and not kept.
KEEP_RESULTS_UP_TO = 1 << 20
# Followers that attach within this window after the end still get full results.
FULL_RESULTS_LINGER_S = 60.0
# Disk writes are batched off the hot path: a short run costs no file I/O while it runs.
FLUSH_DELAY_S = 0.05
# How often a run of a predecessor agent (during an upgrade) is re-read from disk.
DISK_POLL_S = 0.2
# Output events already there when a follower wakes are sent as one, up to this much (a flood then
# costs the notebook a few large messages, not thousands of small ones; nothing waits to be merged).
COALESCE_BYTES = 256 * 1024
COALESCE_FROM = 8  # only a backlog of at least this many is joined: a few events pass as they were written
# Bytes handed to the writer thread and not yet written, beyond which a container's output waits
# (its socket stops being read, so its prints block): the agent's memory stays bounded on a slow disk.
WRITER_BACKLOG_BYTES = 8 << 20
FLUSH_NOW_BYTES = 1 << 20  # unwritten output beyond this goes to the writer at once
# A new run is refused (ENOSPC named) while the state dir has less room than this.
MIN_FREE_BYTES = 256 * 1024
# With this much free, the check above is skipped for the next ROOMY_RECHECK_S (runs' records are
# small: no burst of them fills this much that fast).
ROOMY_BYTES = 256 << 20
ROOMY_RECHECK_S = 0.25


class Run:
    def __init__(self, run_dir: Path, info: pb.RunInfo, request: pb.RunRequest | None = None) -> None:
        self.dir = run_dir
        self.info = info
        self.request = request  # None for runs loaded from an earlier agent
        self.events: list[pb.RunEvent] = []
        self.cancel_requested = False
        self.task: asyncio.Task | None = None
        self.container: Any = None  # the Container running it, once placed (containers.py imports this module)
        self._full_finished: pb.RunEvent | None = None
        self._waiters: list[asyncio.Future | Callable[[], None]] = []  # woken at the next event (see wake)
        self._unwritten = bytearray()  # framed events not yet appended to events.log
        self._unwritten_output = bytearray()  # raw output not yet appended to output.log (output_limits.py)
        self._output_gate = OutputGate(output_cap_bytes())
        self._info_dirty = False
        self._durable = False  # see the durable property

    @property
    def id(self) -> str:
        return self.info.run_id

    @property
    def durable(self) -> bool:
        """Its container outlives this agent (remote_agent/supervision.py): each event is written before the
        agent goes on, so a crash loses none that a follower saw (a short run's events wait 50 ms instead)."""
        return self._durable

    @durable.setter
    def durable(self, durable: bool) -> None:
        if durable and not self._durable:
            self.flush()
            _writer.barrier()  # what was handed to the writer comes first in the log
        self._durable = durable

    @property
    def done(self) -> bool:
        return self.info.state in FINAL_STATES

    # -- recording ---------------------------------------------------------

    def emit(self, **kind) -> pb.RunEvent:
        event = pb.RunEvent(seq=len(self.events) + 1, time=time.time(), **kind)
        self._record(event)
        return event

    def emit_output(self, output: pb.Output) -> None:
        """A chunk of output: kept in full in output.log, an event while under the run's cap."""
        self._unwritten_output += output.data
        if self._output_gate.admit(len(output.data)):
            self.emit(output=output)
        elif self._output_gate.left_out_chunks == 1:
            self.emit(output=pb.Output(stream=pb.STDERR,
                                       data=self._output_gate.first_marker(self.output_log_path).encode()))
        if len(self._unwritten_output) >= FLUSH_NOW_BYTES:  # a flood: to the writer now, not in 50 ms
            self.flush()
        else:
            self._schedule_flush()

    @property
    def output_log_path(self) -> Path:
        """Where the run's whole output is (rotated: the older part in ``output.log.1``)."""
        return self.dir / OUTPUT_LOG

    @property
    def backlogged(self) -> bool:
        """Whether the run logs' writer is behind by more than it may be (a container's output should wait)."""
        return _backlog.bytes + len(self._unwritten_output) > WRITER_BACKLOG_BYTES

    async def drained(self) -> None:
        """Wait until the writer has caught up by half of what it may be behind."""
        self.flush()
        while _backlog.bytes > WRITER_BACKLOG_BYTES // 2:
            await asyncio.sleep(0.01)

    def set_state(self, state: pb.RunState) -> None:
        self.info.state = state
        if state == pb.RUNNING:
            self.info.started = time.time()
        self.save_info()

    def request_input(self, request: pb.InputRequest) -> None:
        """Its code reads stdin (a breakpoint's prompt): the run waits for a debugger until it is answered."""
        if request.withdrawn:  # the read was interrupted (a cancel, the timeout): nothing waits any more
            if self.info.input_request_seq and not self.done:
                self.info.input_request_seq = 0
                self.info.state = pb.RUNNING
                self.save_info()
            return
        event = self.emit(input_request=request)
        self.info.input_request_seq = event.seq
        self.info.state = pb.WAITING_FOR_DEBUGGER
        self.save_info()

    def answer_input(self, request_seq: int, text: str, eof: bool) -> pb.InputAnswer:
        """Take the answer to the InputRequest event ``request_seq``; raises RequestError when the run
        isn't waiting for that one (it was answered by another client, withdrawn, or the run ended)."""
        if self.done or not self.info.input_request_seq:
            raise RequestError(f"run {self.id} is not waiting for input", request_errors.CONFLICT)
        if request_seq != self.info.input_request_seq:
            raise RequestError(f"run {self.id} is waiting for the input asked at event {self.info.input_request_seq}, "
                               f"not {request_seq} (it was answered already)", request_errors.CONFLICT)
        self.info.input_request_seq = 0
        self.info.state = pb.RUNNING
        self.save_info()
        self.emit(input_answered=pb.InputAnswered(request_seq=request_seq, text=text, eof=eof))
        return pb.InputAnswer(text=text, eof=eof)

    def finish(self, finished: pb.RunFinished) -> None:
        if self.done:
            return
        self.info.input_request_seq = 0
        self.info.state = finished.state
        self.info.finished = time.time()
        if finished.HasField("error"):
            self.info.error = f"{finished.error.type_name}: {finished.error.message}"[:500]
        if self._output_gate.left_out_bytes:
            self.emit(output=pb.Output(stream=pb.STDERR,
                                       data=self._output_gate.final_marker(self.output_log_path).encode()))
        full = pb.RunEvent(seq=len(self.events) + 1, time=time.time(), finished=finished)
        kept = full
        if not self.info.detach and full.ByteSize() > KEEP_RESULTS_UP_TO and self._waiters:
            kept = pb.RunEvent()
            kept.CopyFrom(full)
            kept.finished.values.clear()
            kept.finished.return_value = b""
            kept.finished.results_dropped = True
            self._full_finished = full
            asyncio.get_running_loop().call_later(FULL_RESULTS_LINGER_S, self._drop_full_results)
        self._record(kept)
        self.save_info()

    def _drop_full_results(self) -> None:
        self._full_finished = None

    def _record(self, event: pb.RunEvent) -> None:
        self.events.append(event)
        self.info.last_seq = event.seq
        body = event.SerializeToString()
        self._unwritten += _FRAME.pack(len(body))
        self._unwritten += body
        self._schedule_flush()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not isinstance(waiter, asyncio.Future):
                waiter()
            elif not waiter.done():
                waiter.set_result(None)

    def wake(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, as the next event is recorded: a follower that sends events itself
        (local_runs.py) without waiting for a turn of the event loop. It must not raise."""
        self._waiters.append(callback)

    def save_info(self) -> None:
        self._info_dirty = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self.durable:
            self.flush()
            return
        _due.add(self)

    def flush(self) -> None:
        """Hand unwritten events and info to the writer thread (written here, at once, when durable)."""
        work = self._unwritten_work()
        if work is None:
            return
        if self._durable:
            _append_to_run_dir(*work)
        else:
            _writer.append(*work)

    def drop_unwritten(self) -> None:
        """Forget what waits to be written (the run is pruned: its directory is removed)."""
        self._unwritten, self._unwritten_output, self._info_dirty = bytearray(), bytearray(), False

    def _unwritten_work(self) -> tuple[Path, bytearray, bytes | None, bytearray] | None:
        """What waits to be written (the run dir, events, info, output), taken from the run; None if nothing."""
        if not self._unwritten and not self._info_dirty and not self._unwritten_output:
            return None
        info = self.info.SerializeToString() if self._info_dirty else None
        # Handed over, not copied: a flood's buffers are large.
        events, self._unwritten = self._unwritten, bytearray()
        output, self._unwritten_output = self._unwritten_output, bytearray()
        _backlog.add(len(events) + len(output))
        self._info_dirty = False
        return self.dir, events, info, output

    # -- following ---------------------------------------------------------

    async def follow(self, after_seq: int = 0, follow: bool = True) -> AsyncIterator[pb.RunEvent]:
        """Events after ``after_seq``; with ``follow``, wait for more until the run ends."""
        index = after_seq
        while True:
            for event, after in self.ready_events(index):
                index = after
                yield event
            if self.done or not follow:
                return
            if self.request is None:
                # Another agent (one handing over to us) runs it: follow its files.
                await asyncio.sleep(DISK_POLL_S)
                self.refresh_from_disk()
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def ready_events(self, index: int) -> Iterator[tuple[pb.RunEvent, int]]:
        """The events recorded after the first ``index``, as followers get them (output coalesced, the
        full result), each with the index to continue from after it."""
        while index < len(self.events):
            event = self.events[index]
            if event.HasField("finished") and self._full_finished is not None:
                event = self._full_finished
            index += 1
            if event.HasField("output"):
                event, index = self._coalesced(event, index)
            yield event, index

    def _coalesced(self, first: pb.RunEvent, index: int) -> tuple[pb.RunEvent, int]:
        """``first`` joined with the output events of its stream right after it (already here), and the
        index after them; the joined event carries the last one's seq, so a follower resumes after it."""
        end, size = index, len(first.output.data)
        while end < len(self.events) and size < COALESCE_BYTES:
            following = self.events[end]
            if not following.HasField("output") or following.output.stream != first.output.stream:
                break
            size += len(following.output.data)
            end += 1
        if end - index + 1 < COALESCE_FROM:
            return first, index
        last = self.events[end - 1]
        data = b"".join(event.output.data for event in self.events[index - 1: end])
        return pb.RunEvent(seq=last.seq, time=last.time, output=pb.Output(stream=first.output.stream, data=data)), end

    def refresh_from_disk(self) -> None:
        """Re-read a run that another agent process is writing."""
        info = read_info(self.dir)
        if info is None:
            return
        self.info = info
        self.events = list(read_event_log(self.dir / "events.log"))


class RunRegistry:
    """All runs this agent knows: live ones in memory, earlier ones on disk."""

    def __init__(self, runs_dir: Path, keep: int = 500, adopted: frozenset[str] = frozenset()) -> None:
        self.dir = runs_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.adopted = adopted  # containers of an earlier agent taken back: their runs go on (supervision.py)
        self._runs: dict[str, Run] = {}
        self._roomy_until = 0.0  # until then (monotonic) the state dir is known to have ROOMY_BYTES free
        self._load_earlier_runs()

    def create(self, request: pb.RunRequest) -> Run:
        """A new run; raises ValueError for a run id that is malformed or taken."""
        run_id = request.run_id or new_run_id()
        if not RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} is not of the form r-1a2b3c4d")
        if run_id in self._runs:
            raise ValueError(f"run id {run_id} is already taken")
        self._check_room()
        info = pb.RunInfo(run_id=run_id, state=pb.PENDING, kind=request.kind, label=request.label,
                          session=request.session, created=time.time(), detach=request.detach,
                          agent_pid=os.getpid())
        run = Run(self.dir / run_id, info, request)
        run.save_info()
        # On disk at once (in the background): a run is never unknown after a crash. Its later records go
        # with the next batch (_DueFlushes); with that, this costs a warm call nothing measurable.
        run.flush()
        self._runs[run_id] = run
        self._prune()
        return run

    def _check_room(self) -> None:
        """Refuse a run the state dir has no room to record (a statvfs: no file I/O on the hot path)."""
        now = time.monotonic()
        if now < self._roomy_until:  # plenty of room a moment ago: no statvfs for each of a burst of runs
            return
        try:
            stat = os.statvfs(self.dir)
        except OSError:
            return
        free = stat.f_bavail * stat.f_frsize
        if free >= ROOMY_BYTES:
            self._roomy_until = now + ROOMY_RECHECK_S
        if free < MIN_FREE_BYTES:
            raise RequestError(no_space_message(self.dir.parent, "no run can start until there is room "
                                                                 "to record it"), request_errors.NO_SPACE)

    def get(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        if run is not None and run.request is None and (not run.events or not run.done):
            run.refresh_from_disk()
        return run

    def list(self, limit: int = 0) -> list[Run]:
        runs = sorted(self._runs.values(), key=lambda r: r.info.created, reverse=True)
        return runs[:limit] if limit else runs

    def _load_earlier_runs(self) -> None:
        adopt_spares(self.dir)  # emptied directories of pruned runs, for new ones (run_dirs.py)
        for run_dir in self.dir.iterdir():
            if run_dir.name == SPARE_DIR:
                continue
            info = read_info(run_dir)
            if info is None:
                continue
            if (info.state not in FINAL_STATES and info.container_id not in self.adopted
                    and (info.agent_pid == os.getpid() or not pid_alive(info.agent_pid))):
                # Its agent died with it; the container went with the agent.
                info.state = pb.LOST
                info.error = "the agent stopped while this run was in progress"
                info.finished = info.finished or time.time()
                write_info(run_dir, info)
            self._runs[info.run_id] = Run(run_dir, info)
        # Oldest first, as runs created from now on follow them: _prune takes the first finished ones.
        self._runs = dict(sorted(self._runs.items(), key=lambda item: item[1].info.created))
        self._prune()

    def flush_all(self) -> None:
        """Write everything out and wait for it (at shutdown)."""
        for run in self._runs.values():
            run.flush()
        _writer.barrier()

    def _prune(self) -> None:
        # In batches, so that not every new run pays for it. The registry is in the order runs were created
        # (earlier ones loaded oldest first), so the oldest finished runs are its first finished ones: no sort
        # of the whole registry (0.2-0.6 ms, in one run's start out of every keep/10).
        if len(self._runs) <= self.keep + self.keep // 10:
            return
        excess = len(self._runs) - self.keep
        oldest: list[Run] = []
        for run in self._runs.values():
            if run.done:
                oldest.append(run)
                if len(oldest) == excess:
                    break
        for run in oldest:
            del self._runs[run.id]
            run.drop_unwritten()  # its directory goes: a later write would make it again
        _writer.remove(*(run.dir for run in oldest))


class _Backlog:
    """Bytes handed to the writer thread and not written yet (read on the loop, changed on both sides)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n


_backlog = _Backlog()
_told_full: set[str] = set()  # runs whose log hit a full disk (warned once each)


def _append_to_run_dir(run_dir: Path, events: bytes | bytearray, info: bytes | None,
                       output: bytes | bytearray = b"") -> None:
    try:
        _write_run_dir(run_dir, events, info, output)
    finally:
        _backlog.add(-(len(events) + len(output)))


def _write_run_dir(run_dir: Path, events: bytes | bytearray, info: bytes | None, output: bytes | bytearray) -> None:
    # Raw os calls: Python's open() adds an fstat, an ioctl and lseeks per file, each a system call that
    # hands the GIL to the event loop and back; a short run's two flushes cost half as many this way.
    try:
        fresh = claim_spare(run_dir)  # a pruned run's emptied directory: no inode to create (run_dirs.py)
        if not fresh:
            try:
                os.mkdir(run_dir)
                fresh = True
            except FileExistsError:
                pass
            except FileNotFoundError:  # the runs dir itself was removed
                run_dir.mkdir(parents=True, exist_ok=True)
        if output:
            append_rotating(run_dir / OUTPUT_LOG, output, output_log_bytes())
        if events:
            write_file(f"{run_dir}/events.log", events, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        if info is not None:
            write_info_file(run_dir, info, fresh)
    except OSError as exc:
        if not disk_full(exc):
            log.exception("could not write the log of run %s", run_dir.name)
        elif run_dir.name not in _told_full:  # once per run: a flood on a full disk must not flood the log
            _told_full.add(run_dir.name)
            log.warning("%s; run %s's log on disk is incomplete", no_space_message(run_dir.parent.parent,
                                                                                "writes are failing"), run_dir.name)


def read_info(run_dir: Path) -> pb.RunInfo | None:
    """A run directory's info, or None where there is none (a spare, a torn or half-written file)."""
    try:
        info = pb.RunInfo.FromString((run_dir / "info.pb").read_bytes())
    except (OSError, ValueError):
        return None
    # Without its id it is no run's info: a file read while its inode was being rewritten (run_dirs.py
    # reuses a replaced info.pb's inode for the next one).
    return info if info.run_id else None


def write_info(run_dir: Path, info: pb.RunInfo) -> None:
    tmp = run_dir / "info.pb.tmp"
    tmp.write_bytes(info.SerializeToString())
    os.replace(tmp, run_dir / "info.pb")


def read_event_log(path: Path):
    try:
        data = path.read_bytes()
    except OSError:
        return
    offset = 0
    while offset + _FRAME.size <= len(data):
        (length,) = _FRAME.unpack_from(data, offset)
        offset += _FRAME.size
        if offset + length > len(data):
            break  # a torn last frame from a crash
        yield pb.RunEvent.FromString(data[offset: offset + length])
        offset += length


# One thread does the run logs' file I/O, in order per run, off the event loop; work that waits for it is
# merged per run (run_log_writer.py), so a burst of short runs can't outrun a slow disk without bound.
_writer = RunLogWriter(write=_write_run_dir, remove=retire, written=lambda n: _backlog.add(-n))


class _DueFlushes:
    """Runs with records waiting for the writer, handed over together FLUSH_DELAY_S after the first of them.

    One timer and one wake-up of the writer thread for a burst of runs, not one of each per run: a warm call
    every half millisecond otherwise woke the writer every half millisecond, each time taking the GIL from
    the event loop. A run waits no longer than it did with a timer of its own.
    """

    def __init__(self) -> None:
        self._runs: dict[Run, None] = {}  # insertion-ordered: runs are written in the order they were due
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, run: Run) -> None:
        self._runs[run] = None
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:  # (a loop that ended left its timer unfired)
            self._loop = loop
            self._handle = loop.call_later(FLUSH_DELAY_S, self.hand_over)

    def hand_over(self) -> None:
        self._handle = None
        runs, self._runs = self._runs, {}
        # A run flushed meanwhile (durable, a flood) has nothing left; a durable one writes its own.
        _writer.append_many([work for run in runs if not run.durable and (work := run._unwritten_work())])
        for run in runs:
            if run.durable:
                run.flush()


_due = _DueFlushes()

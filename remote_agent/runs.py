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
import shutil
import struct
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbmodal_wire import pb
from nbmodal_wire.names import RUN_ID, new_run_id  # noqa: F401  (RUN_ID re-exported)
from nbmodal_wire.pids import pid_alive

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
        self._waiters: list[asyncio.Future] = []
        self._unwritten = bytearray()  # framed events not yet appended to events.log
        self._info_dirty = False
        self._flush_handle: asyncio.TimerHandle | None = None

    @property
    def id(self) -> str:
        return self.info.run_id

    @property
    def done(self) -> bool:
        return self.info.state in FINAL_STATES

    # -- recording ---------------------------------------------------------

    def emit(self, **kind) -> pb.RunEvent:
        event = pb.RunEvent(seq=len(self.events) + 1, time=time.time(), **kind)
        self._record(event)
        return event

    def set_state(self, state: pb.RunState) -> None:
        self.info.state = state
        if state == pb.RUNNING:
            self.info.started = time.time()
        self.save_info()

    def finish(self, finished: pb.RunFinished) -> None:
        if self.done:
            return
        self.info.state = finished.state
        self.info.finished = time.time()
        if finished.HasField("error"):
            self.info.error = f"{finished.error.type_name}: {finished.error.message}"[:500]
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
            if not waiter.done():
                waiter.set_result(None)

    def save_info(self) -> None:
        self._info_dirty = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)

    def flush(self) -> None:
        """Hand unwritten events and info to the writer thread."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._unwritten and not self._info_dirty:
            return
        info = self.info.SerializeToString() if self._info_dirty else None
        _writer.submit(_append_to_run_dir, self.dir, bytes(self._unwritten), info)
        self._unwritten.clear()
        self._info_dirty = False

    # -- following ---------------------------------------------------------

    async def follow(self, after_seq: int = 0, follow: bool = True) -> AsyncIterator[pb.RunEvent]:
        """Events after ``after_seq``; with ``follow``, wait for more until the run ends."""
        index = after_seq
        while True:
            while index < len(self.events):
                event = self.events[index]
                if event.HasField("finished") and self._full_finished is not None:
                    event = self._full_finished
                index += 1
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

    def refresh_from_disk(self) -> None:
        """Re-read a run that another agent process is writing."""
        try:
            self.info = pb.RunInfo.FromString((self.dir / "info.pb").read_bytes())
        except (OSError, ValueError):
            return
        self.events = list(read_event_log(self.dir / "events.log"))


class RunRegistry:
    """All runs this agent knows: live ones in memory, earlier ones on disk."""

    def __init__(self, runs_dir: Path, keep: int = 500) -> None:
        self.dir = runs_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._runs: dict[str, Run] = {}
        self._load_earlier_runs()

    def create(self, request: pb.RunRequest) -> Run:
        """A new run; raises ValueError for a run id that is malformed or taken."""
        run_id = request.run_id or new_run_id()
        if not RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} is not of the form r-1a2b3c4d")
        if run_id in self._runs:
            raise ValueError(f"run id {run_id} is already taken")
        info = pb.RunInfo(run_id=run_id, state=pb.PENDING, kind=request.kind, label=request.label,
                          session=request.session, created=time.time(), detach=request.detach,
                          agent_pid=os.getpid())
        run = Run(self.dir / run_id, info, request)
        run.save_info()
        run.flush()  # on disk at once (in the background): a run is never unknown after a crash
        self._runs[run_id] = run
        self._prune()
        return run

    def get(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        if run is not None and run.request is None and (not run.events or not run.done):
            run.refresh_from_disk()
        return run

    def list(self, limit: int = 0) -> list[Run]:
        runs = sorted(self._runs.values(), key=lambda r: r.info.created, reverse=True)
        return runs[:limit] if limit else runs

    def _load_earlier_runs(self) -> None:
        for run_dir in self.dir.iterdir():
            info_path = run_dir / "info.pb"
            try:
                info = pb.RunInfo.FromString(info_path.read_bytes())
            except (OSError, ValueError):
                continue
            if info.state not in FINAL_STATES and (info.agent_pid == os.getpid() or not pid_alive(info.agent_pid)):
                # Its agent died with it; the container went with the agent.
                info.state = pb.LOST
                info.error = "the agent stopped while this run was in progress"
                info.finished = info.finished or time.time()
                write_info(run_dir, info)
            self._runs[info.run_id] = Run(run_dir, info)
        self._prune()

    def flush_all(self) -> None:
        """Write everything out and wait for it (at shutdown)."""
        for run in self._runs.values():
            run.flush()
        _writer.submit(lambda: None).result()

    def _prune(self) -> None:
        # In batches, so that not every new run pays for sorting the registry.
        if len(self._runs) <= self.keep + self.keep // 10:
            return
        finished = sorted((r for r in self._runs.values() if r.done), key=lambda r: r.info.created)
        for run in finished[: len(self._runs) - self.keep]:
            del self._runs[run.id]
            _writer.submit(shutil.rmtree, run.dir, ignore_errors=True)


# One thread does the run logs' file I/O, in order, off the event loop.
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-log-writer")


def _append_to_run_dir(run_dir: Path, events: bytes, info: bytes | None) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if events:
            with open(run_dir / "events.log", "ab") as f:
                f.write(events)
        if info is not None:
            tmp = run_dir / "info.pb.tmp"
            tmp.write_bytes(info)
            os.replace(tmp, run_dir / "info.pb")
    except OSError:
        log.exception("could not write the log of run %s", run_dir.name)


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

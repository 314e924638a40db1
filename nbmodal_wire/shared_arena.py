"""Large values on one machine through shared, reused memory (an arena), read without a copy.

A blob file of a large value costs two ``write()``s into page cache per round trip. Instead each
writer process (the notebook for its arguments, each container for its results) keeps *segments*:
files in the blob dir's ``.arena/`` that it keeps mapped across calls, so a warm write is one
memcpy into pages already there. The value's blob file then holds only its pickle and a reference
(segment, slot, generation, buffer offsets); a reader maps the segment once, keeps it mapped, and
hands pickle views into it, so the arrays it gets are backed by the writer's pages (writable: the
region is the reader's until it lets go of it).

Leases, without messages: a segment's first page is a table of slots, one per value (state,
generation, where its buffers are, and the id of the blob file that refers to it). A slot stays
taken while that blob file exists or while any reader holds a shared OFD lock on the slot's lock
byte; a reader takes the lock before it uses the region and drops it when the last object using
that value is gone (``weakref.finalize`` on the buffers pickle got: ctypes arrays, which whatever
uses one keeps alive as its buffer's owner). The kernel drops a dead reader's locks, so a container
that dies holding a value gives it back. Only the writer reuses slots; it checks a slot's blob file
and lock before it does.

A writer holds an exclusive lock on each of its segments' byte 0 for life. Segments nobody owns
and nobody leases are deleted: by the writer at exit or when idle (``NBMODAL_ARENA_IDLE_S``), by
the last reader of an orphaned one, and by ``sweep`` (the agent, when a container died).
Off with ``NBMODAL_ARENA=0``; ``NBMODAL_ARENA_MAX_BYTES`` caps what one writer keeps mapped.

Example (what ``blobs.write_blob`` and ``blobs.read_blob`` do)::

    ref = writer_for(blob_dir).put(buffers, blob_id, publish=write_the_blob_file)
    views = reader().lease(blob_dir, ref)  # zero-copy, held until the views are gone
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import mmap
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

ARENA_DIR = ".arena"
MAGIC = b"NBARENA1"
NSLOTS = 64
HEADER = struct.Struct("<8sIIQQ")  # magic, slots, reserved, data start, size
SLOT = struct.Struct("<IIQQQ8s8x")  # state, reserved, generation, offset, length, blob id
SLOTS_AT = 64
DATA_START = 2 << 20  # the first region starts on a huge page boundary
REGION_ALIGN = 2 << 20  # each value's region too: whole large folios, aligned arrays
BUFFER_ALIGN = 4096
SEGMENT_MIN = 64 << 20
OWNER_BYTE = 0
LOCK_BASE = 1 << 40  # slot i's lock byte: LOCK_BASE + i (past the end of the file; locks don't care)
FREE, LIVE, RECLAIMING = 0, 1, 2
MIN_BYTES = 8 << 20  # below this a blob file costs less than the arena's bookkeeping is worth
IDLE_S_DEFAULT = 30.0
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)

_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux x86_64 / aarch64
F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


class ArenaGone(RuntimeError):
    """The region a value referred to was given back before it could be read."""


def enabled() -> bool:
    """Whether large values go through arenas (``NBMODAL_ARENA=0``: blob files only)."""
    return os.environ.get("NBMODAL_ARENA", "1") != "0"


def min_bytes() -> int:
    """The smallest value (pickled, in bytes) that goes through an arena."""
    return MIN_BYTES


def max_bytes() -> int:
    """What one writer may keep mapped: ``NBMODAL_ARENA_MAX_BYTES``, else a quarter of RAM (at most 16 GiB)."""
    configured = os.environ.get("NBMODAL_ARENA_MAX_BYTES")
    if configured:
        return int(configured)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 8 << 30
    return min(ram // 4, 16 << 30)


def idle_s() -> float:
    return float(os.environ.get("NBMODAL_ARENA_IDLE_S", IDLE_S_DEFAULT))


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def _lock(fd: int, start: int, kind: int) -> None:
    fcntl.fcntl(fd, F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, 1, 0))


def _locked(fd: int, start: int) -> bool:
    """Whether another open file holds a lock on byte ``start``."""
    reply = fcntl.fcntl(fd, F_OFD_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, 1, 0))
    return _FLOCK.unpack(reply)[0] != fcntl.F_UNLCK


class Ref(NamedTuple):
    """Where a value's buffers are: ``segment`` (a file name in the arena dir), its slot and generation."""

    segment: str
    slot: int
    generation: int
    buffers: tuple[tuple[int, int], ...]  # (offset, length) in the segment file

    def to_tuple(self) -> tuple:
        return ("arena", self.segment, self.slot, self.generation, self.buffers)

    @classmethod
    def from_tuple(cls, value: tuple) -> Ref:
        _, segment, slot, generation, buffers = value
        if "/" in segment or not segment.startswith("s-"):
            raise ValueError(f"not an arena segment name: {segment!r}")
        if not 0 <= int(slot) < NSLOTS:
            raise ValueError(f"no arena slot {slot!r}")
        return cls(segment, int(slot), int(generation), tuple((int(o), int(n)) for o, n in buffers))


class _Segment:
    """One mapped segment file (writer's or reader's view of it)."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path, self.fd, self.size = path, fd, size
        self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        self.last_used = time.monotonic()
        self.populated: set[tuple[int, int]] = set()  # a reader's: the spans it mapped in

    def slot(self, i: int) -> tuple[int, int, int, int, int, bytes]:
        return SLOT.unpack_from(self.map, SLOTS_AT + i * SLOT.size)

    def set_slot(self, i: int, state: int, generation: int, offset: int, length: int, blob: bytes) -> None:
        # The state word goes last, on its own: a reader never sees LIVE with the old offsets.
        SLOT.pack_into(self.map, SLOTS_AT + i * SLOT.size, FREE, 0, generation, offset, length, blob)
        self.set_state(i, state)

    def set_state(self, i: int, state: int) -> None:
        struct.pack_into("<I", self.map, SLOTS_AT + i * SLOT.size, state)

    def close(self) -> None:
        try:
            self.view.release()
            self.map.close()
        except BufferError:
            return  # views of it are still alive (a reader's values): the mapping goes with them
        os.close(self.fd)

    def reclaim(self, blob_dir: Path) -> None:
        """Free the slots whose blob file is gone and that no reader holds."""
        for i in range(NSLOTS):
            state, _, _, _, _, blob = self.slot(i)
            if state != LIVE or (blob_dir / ("b-" + blob.hex())).exists():
                continue
            # RECLAIMING first: a reader that locks the slot meanwhile waits for the verdict (see Reader.lease).
            self.set_state(i, RECLAIMING)
            self.set_state(i, LIVE if _locked(self.fd, LOCK_BASE + i) else FREE)

    def live_regions(self) -> list[tuple[int, int]]:
        regions = []
        for i in range(NSLOTS):
            state, _, _, offset, length, _ = self.slot(i)
            if state != FREE:
                regions.append((offset, offset + length))
        return sorted(regions)

    def find_gap(self, length: int) -> int | None:
        start = DATA_START
        for begin, end in self.live_regions():
            if begin - start >= length:
                return start
            start = max(start, _align(end, REGION_ALIGN))
        return start if self.size - start >= length else None

    def free_slot(self) -> int | None:
        for i in range(NSLOTS):
            if self.slot(i)[0] == FREE:
                return i
        return None


class Writer:
    """A process's arena in one blob dir: the segments it writes values into and keeps mapped."""

    def __init__(self, blob_dir: Path) -> None:
        self.blob_dir = blob_dir
        self.dir = blob_dir / ARENA_DIR
        self.segments: list[_Segment] = []
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    @property
    def mapped(self) -> int:
        return sum(s.size for s in self.segments)

    def put(self, buffers: Sequence[memoryview], blob_id: str, publish: Callable[[Ref], None]) -> Ref | None:
        """Copy ``buffers`` into a free region and call ``publish`` with its reference (which writes the blob
        file that holds the region); None when the arena has no room (the caller writes a blob file)."""
        lengths = [b.nbytes for b in buffers]
        need = _align(sum(_align(n, BUFFER_ALIGN) for n in lengths), REGION_ALIGN) or REGION_ALIGN
        with self.lock:
            segment, offset, slot = self._place(need)
            if segment is None:
                return None
            generation = segment.slot(slot)[2] + 1
            refs, at = [], offset
            for buffer, n in zip(buffers, lengths):
                segment.view[at:at + n] = buffer  # the one copy: into pages that stay mapped
                refs.append((at, n))
                at += _align(n, BUFFER_ALIGN)
            segment.set_slot(slot, LIVE, generation, offset, need, bytes.fromhex(blob_id[2:]))
            segment.last_used = time.monotonic()
            ref = Ref(segment.path.name, slot, generation, tuple(refs))
            try:
                publish(ref)
            except BaseException:
                segment.set_state(slot, FREE)
                raise
        self._arm_timer()
        return ref

    def _place(self, need: int) -> tuple[_Segment | None, int, int]:
        for segment in sorted(self.segments, key=lambda s: s.size):
            segment.reclaim(self.blob_dir)
            slot = segment.free_slot()
            offset = segment.find_gap(need) if slot is not None else None
            if slot is not None and offset is not None:
                return segment, offset, slot
        size = max(SEGMENT_MIN, DATA_START + need)
        if self.mapped + size > max_bytes():
            self._drop(lambda s: not s.live_regions())  # wholly free segments too small: make room
            if self.mapped + size > max_bytes():
                return None, 0, 0
        created = self._create(size)
        return (created, DATA_START, 0) if created is not None else (None, 0, 0)

    def _create(self, size: int) -> _Segment | None:
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            path = self.dir / ("s-" + os.urandom(8).hex())
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.debug("no arena in %s (%s): blob files instead", self.dir, exc)
            return None
        try:
            _lock(fd, OWNER_BYTE, fcntl.F_WRLCK)
            # Blocks reserved now, not as pages are first written: a full disk is an error here rather than a
            # SIGBUS in the middle of a copy into the mapping.
            os.posix_fallocate(fd, 0, size)
            segment = _Segment(path, fd, size)
        except (OSError, ValueError) as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            log.debug("no arena segment of %d bytes in %s (%s): blob files instead", size, self.dir, exc)
            return None
        HEADER.pack_into(segment.map, 0, MAGIC, NSLOTS, 0, DATA_START, size)
        try:  # fresh pages in one call rather than a fault each as the first value is copied in
            segment.map.madvise(MADV_POPULATE_WRITE, DATA_START, size - DATA_START)
        except OSError:
            pass
        self.segments.append(segment)
        return segment

    def _drop(self, condition: Callable[[_Segment], bool]) -> None:
        for segment in list(self.segments):
            segment.reclaim(self.blob_dir)
            if condition(segment):
                self.segments.remove(segment)
                segment.path.unlink(missing_ok=True)
                segment.close()

    def _arm_timer(self) -> None:
        with self.lock:
            if self.timer is not None and self.timer.is_alive():
                return  # it looks at every segment's last use when it fires
            self.timer = threading.Timer(idle_s(), self.trim)
            self.timer.daemon = True
            self.timer.start()

    def trim(self) -> None:
        """Give back the segments that nobody leases and that went unused for ``NBMODAL_ARENA_IDLE_S``."""
        cutoff = time.monotonic() - idle_s() * 0.9
        with self.lock:
            self._drop(lambda s: s.last_used <= cutoff and not s.live_regions())
            remaining = bool(self.segments)
            self.timer = None
        if remaining:
            self._arm_timer()

    def close(self) -> None:
        """At exit: delete the segments nobody leases; the others stay for their readers (see ``sweep``)."""
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self._drop(lambda s: not s.live_regions())
            for segment in self.segments:
                segment.close()  # its owner lock goes with the fd: readers and sweep now delete it when done
            self.segments.clear()


class Reader:
    """The segments this process reads values from, mapped once and kept; the leases it holds in them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # finalizers run wherever the last view is dropped, this thread too
        self.segments: dict[Path, _Segment] = {}
        self.leases: dict[tuple[Path, int, int], int] = {}
        self.timer: threading.Timer | None = None

    def lease(self, blob_dir: Path, ref: Ref) -> list[Any]:
        """Zero-copy views of a value's buffers; the region is held until every view is gone.

        Raises ArenaGone if the region was given back (its blob file was removed before it was read)."""
        path = blob_dir / ARENA_DIR / ref.segment
        key = (path, ref.slot, ref.generation)
        with self.lock:
            segment = self.segments.get(path)
            if segment is None:
                segment = self._open(path)
            if self.leases.get(key, 0) == 0:
                _lock(segment.fd, LOCK_BASE + ref.slot, fcntl.F_RDLCK)
                try:
                    self._check(segment, ref)
                except BaseException:
                    _lock(segment.fd, LOCK_BASE + ref.slot, fcntl.F_UNLCK)
                    raise
            self.leases[key] = self.leases.get(key, 0) + 1
            segment.last_used = time.monotonic()
            # ctypes arrays, not memoryviews: what numpy (or any consumer) takes a buffer from keeps the ctypes
            # object alive as that buffer's owner, so its finalizer runs when the last user is gone. (A memoryview
            # slice would die at once: numpy's base is a new memoryview of the mmap, not the slice.)
            import ctypes  # here: a container that never reads an arena doesn't pay for its import

            views = [(ctypes.c_ubyte * length).from_buffer(segment.map, offset) for offset, length in ref.buffers]
        if ref.buffers:
            start = ref.buffers[0][0] - ref.buffers[0][0] % mmap.PAGESIZE
            span = (start, ref.buffers[-1][0] + ref.buffers[-1][1])
            if span not in segment.populated:
                # Mapped in one call, not a fault per page as the value is used; once only: the mapping is kept
                # and a writer reuses its regions, so the next value there finds its pages mapped already.
                segment.populated.add(span)
                try:
                    segment.map.madvise(MADV_POPULATE_READ, span[0], span[1] - span[0])
                except OSError:
                    pass
        remaining = [len(views)]
        lock = self.lock

        def release() -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    self._unlease(key)

        for view in views:
            weakref.finalize(view, release)
        if not views:
            with lock:
                self._unlease(key)
        self._arm_timer()
        return views

    def _arm_timer(self) -> None:
        with self.lock:
            if self.timer is not None and self.timer.is_alive():
                return
            self.timer = threading.Timer(idle_s(), self.trim)
            self.timer.daemon = True
            self.timer.start()

    def _open(self, path: Path) -> _Segment:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            magic, _, _, _, size = HEADER.unpack_from(os.pread(fd, HEADER.size, 0))
            if magic != MAGIC:
                raise ValueError(f"{path} is not an arena segment")
            segment = _Segment(path, fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.segments[path] = segment
        return segment

    @staticmethod
    def _check(segment: _Segment, ref: Ref) -> None:
        deadline = time.monotonic() + 2.0
        while True:
            state, _, generation = segment.slot(ref.slot)[:3]
            if generation != ref.generation or state == FREE:
                raise ArenaGone(f"the value in {segment.path.name} slot {ref.slot} was given back before it was read")
            if state == LIVE:
                return
            if time.monotonic() > deadline:  # a writer deciding between LIVE and FREE takes microseconds
                raise ArenaGone(f"{segment.path.name} slot {ref.slot} stayed in reclaim")
            time.sleep(0.001)

    def _unlease(self, key: tuple[Path, int, int]) -> None:
        path, slot, _ = key
        self.leases[key] -= 1
        if self.leases[key]:
            return
        del self.leases[key]
        segment = self.segments.get(path)
        if segment is None:
            return
        try:
            _lock(segment.fd, LOCK_BASE + slot, fcntl.F_UNLCK)
            if not any(k[0] == path for k in self.leases) and not _locked(segment.fd, OWNER_BYTE):
                _sweep_segment(segment)  # its writer is gone: the last reader out removes it
        except OSError as exc:
            log.debug("releasing %s slot %d: %s", path.name, slot, exc)

    def trim(self) -> None:
        """Unmap the segments this process holds nothing in that are unused for a while, or deleted."""
        cutoff = time.monotonic() - idle_s()
        with self.lock:
            for path, segment in list(self.segments.items()):
                if any(k[0] == path for k in self.leases):
                    continue
                gone = os.fstat(segment.fd).st_nlink == 0
                if gone or segment.last_used <= cutoff:
                    del self.segments[path]
                    segment.close()
            self.timer = None
            again = bool(self.segments)
        if again:
            self._arm_timer()


def _sweep_segment(segment: _Segment) -> bool:
    """Delete an ownerless segment once nothing in it is leased; True if deleted."""
    segment.reclaim(segment.path.parent.parent)
    if segment.live_regions():
        return False
    segment.path.unlink(missing_ok=True)
    return True


def sweep(blob_dir: Path) -> int:
    """Delete the segments whose writer is gone and whose values nobody holds (the agent's cleanup)."""
    removed = 0
    try:
        entries = list(os.scandir(blob_dir / ARENA_DIR))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith("s-"):
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if _locked(fd, OWNER_BYTE):
                continue
            magic, _, _, _, size = HEADER.unpack_from(os.pread(fd, HEADER.size, 0).ljust(HEADER.size, b"\0"))
            if magic != MAGIC:
                os.unlink(entry.path)  # a segment its writer died creating
                removed += 1
                continue
            segment = _Segment(Path(entry.path), os.dup(fd), size)
            try:
                removed += _sweep_segment(segment)
            finally:
                segment.close()
        except (OSError, ValueError) as exc:
            log.debug("sweeping %s: %s", entry.path, exc)
        finally:
            os.close(fd)
    return removed


_writers: dict[Path, Writer] = {}
_reader: Reader | None = None
_state_lock = threading.Lock()


def writer_for(blob_dir: Path) -> Writer:
    """This process's arena in ``blob_dir``."""
    with _state_lock:
        writer = _writers.get(blob_dir)
        if writer is None:
            writer = _writers[blob_dir] = Writer(blob_dir)
        return writer


def reader() -> Reader:
    """This process's reader (one per process: the segments it maps are shared by all its blob dirs)."""
    global _reader
    with _state_lock:
        if _reader is None:
            _reader = Reader()
        return _reader


def _close_all() -> None:
    for writer in list(_writers.values()):
        writer.close()


def _forget_after_fork() -> None:
    # A forked child shares its parent's segments and locks: it must neither write into them nor unlock them.
    global _reader, _state_lock
    _writers.clear()
    _reader = None
    _state_lock = threading.Lock()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_forget_after_fork)

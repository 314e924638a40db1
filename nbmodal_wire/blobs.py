"""Large values travel as blob files, not inside messages.

A value whose pickle (protocol 5) is over ``INLINE_LIMIT`` is written to a
file in the agent's ``blobs/`` dir: a header, the pickle, then its large
buffers (numpy arrays' memory) out of band. A reader maps the file and hands
those buffers to pickle without copying, so an array that crossed is backed
by the mapped file (copy-on-write: writable, the file is never changed).

On the agent's own machine the notebook reads and writes these files
directly; from another machine they are streamed in chunks (PutBlob/GetBlob).

Layout: 8-byte little-endian header length, header (a pickle of the data
length and the buffer lengths, then zeros up to where the first buffer starts
on a page, or on 2 MiB for a large blob), the pickle data, each buffer.

Recycling: a fresh file's pages cost far more than the copy into them (the
kernel allocates and zeroes each page; on a VM the host backs it too), so a
blob that was consumed on this machine is not deleted but moved to the blob
dir's ``.pool/`` (a few files at most, see ``recycle``), and the next writer
overwrites one whose pages are still in memory. A pool file is reused only
once nobody maps it any more: the writer takes a write lease on it, which
the kernel refuses while another open file (a mapping holds one) refers to
it. On a filesystem shared with other machines (whose mappings a lease can't
see), or without leases, blobs are written fresh, as with ``NBMODAL_BLOB_POOL=0``.

Arenas: on a local filesystem a value of ``shared_arena.min_bytes()`` or more goes into the writer's
arena (``shared_arena.py``: shared memory it keeps mapped, read in place); its blob file then holds
only the pickle and a reference to the region (the header's third item), and the region is held
while that file exists or a reader uses the value. When there is no arena (full, off, a filesystem
other machines share, any failure) the value is written whole, as above. ``content_chunks`` turns
either kind into the whole-value form, for a client on another machine.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import io
import logging
import mmap
import os
import pickle
import re
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmodal_wire.pids import pid_alive

if TYPE_CHECKING:
    from nbmodal_wire import shared_arena

INLINE_LIMIT = 1 << 20
CHUNK_BYTES = 4 << 20
_LENGTH = struct.Struct("<Q")
PAGE_ALIGN = 4096
LARGE_ALIGN = 2 << 20  # a huge page
LARGE_ALIGN_FROM = 64 << 20  # where the padding is under 3% of the blob
POOL_DIR = ".pool"
POOL_MAX_FILES = 4  # enough for a call's argument and result on each side
POOL_MAX_BYTES = 2 << 30  # what idle pool files may hold, in all
POOL_MIN_BYTES = 8 << 20  # below this a fresh file is cheap: not worth keeping
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14; Python's constant is newer

log = logging.getLogger(__name__)


BLOB_ID = re.compile(r"b-[0-9a-f]{16}")
_PARTIAL = re.compile(r"b-[0-9a-f]{16}\.partial-([0-9]+)@(.*)")
# Where a write lease sees every process that maps a file: filesystems of this machine alone. On a shared one
# (NFS, Lustre: a Slurm job's blobs) a lease would miss the other nodes' mappings, so nothing is recycled there.
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "bcachefs"})


def new_blob_id() -> str:
    return "b-" + os.urandom(8).hex()  # secrets.token_hex, without its ~3 ms import (hmac) in a container


def valid_blob_path(path: Path) -> bool:
    return bool(BLOB_ID.fullmatch(path.name)) and path.is_file()


class Encoded:
    """A pickled value: ``inline`` bytes, or ``data`` plus out-of-band ``buffers`` for a blob."""

    def __init__(self, inline: bytes | None = None, data: bytes = b"", buffers: list | None = None) -> None:
        self.inline = inline
        self.data = data
        self.buffers = buffers or []

    @property
    def is_blob(self) -> bool:
        return self.inline is None

    @property
    def size(self) -> int:
        if self.inline is not None:
            return len(self.inline)
        return len(self.data) + sum(b.raw().nbytes for b in self.buffers)

    def header(self) -> bytes:
        header = pickle.dumps((len(self.data), [b.raw().nbytes for b in self.buffers]))
        if self.buffers:
            # Zeros after the header's pickle (unpickling stops before them) put the first buffer on a page
            # (a large one on a 2 MiB boundary): the page cache then keeps it in large folios, which map in
            # whole, and an array backed by it is aligned.
            align = LARGE_ALIGN if self.size >= LARGE_ALIGN_FROM else PAGE_ALIGN
            header += bytes(-(_LENGTH.size + len(header) + len(self.data)) % align)
        return _LENGTH.pack(len(header)) + header

    def chunks(self) -> Iterator[memoryview | bytes]:
        """The blob file's content, in pieces (without copying the buffers)."""
        yield self.header()
        yield self.data
        for buffer in self.buffers:
            raw = buffer.raw()
            for start in range(0, raw.nbytes, CHUNK_BYTES):
                yield raw[start:start + CHUNK_BYTES]


def encode(value: Any, dumps: Callable[..., bytes], inline_limit: int = INLINE_LIMIT) -> Encoded:
    """Pickle ``value``; small results stay inline, large ones become blob content."""
    buffers: list[pickle.PickleBuffer] = []
    in_band = 0

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        # Buffers stay in the pickle while they fit in an inline value (so a small one is pickled once);
        # past that they go out of band, where a blob writes them without copying.
        nonlocal in_band
        nbytes = buffer.raw().nbytes
        if not buffers and in_band + nbytes <= inline_limit:
            in_band += nbytes
            return True  # true: in band
        buffers.append(buffer)
        return False

    data = dumps(value, buffer_callback=out_of_band)
    if not buffers and len(data) <= inline_limit:
        return Encoded(inline=data)
    return Encoded(data=data, buffers=buffers)


def pool_enabled() -> bool:
    """Whether blobs reuse pool files and readers map them in at once (``NBMODAL_BLOB_POOL=0``: neither)."""
    return os.environ.get("NBMODAL_BLOB_POOL", "1") != "0"


def _pool_usable(blob_dir: Path) -> bool:
    return pool_enabled() and filesystem_type(blob_dir) in LOCAL_FILESYSTEMS


@functools.lru_cache(maxsize=16)
def filesystem_type(directory: Path) -> str:
    """The type of the filesystem ``directory`` is on ("ext4", "nfs"...), from /proc/self/mountinfo; "" if unknown."""
    try:
        target = os.path.realpath(directory)
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    best, fstype = -1, ""
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best:  # the last of equal mount points is the one on top
            best, fstype = len(mount_point), fields[fields.index("-") + 1]
    return fstype


def _arena_usable(blob_dir: Path, encoded: Encoded) -> bool:
    if not (encoded.is_blob and encoded.buffers and encoded.size >= POOL_MIN_BYTES):
        return False  # the arena's threshold is no lower: skip its import where no value could use it
    from nbmodal_wire import shared_arena

    return (shared_arena.enabled() and encoded.size >= shared_arena.min_bytes()
            and filesystem_type(blob_dir) in LOCAL_FILESYSTEMS)


def write_blob(path: Path, encoded: Encoded) -> None:
    """Write a blob file; it appears at ``path`` only once complete (its buffers in this process's arena when
    it has room, else in the file, over a pool file when one is free)."""
    if _arena_usable(path.parent, encoded):
        from nbmodal_wire import shared_arena

        try:
            raws = [b.raw() for b in encoded.buffers]
            if shared_arena.writer_for(path.parent).put(
                    raws, path.name, lambda ref: _write_file(path, _arena_chunks(encoded, ref), 0)) is not None:
                return
        except (OSError, ValueError, BufferError) as exc:
            log.debug("arena write of %s failed (%s): a blob file instead", path.name, exc)
    _write_file(path, encoded.chunks(), encoded.size)


def _arena_chunks(encoded: Encoded, ref: shared_arena.Ref) -> list[bytes]:
    header = pickle.dumps((len(encoded.data), [], ref.to_tuple()))
    return [_LENGTH.pack(len(header)) + header, encoded.data]


def _write_file(path: Path, chunks: Iterator[memoryview | bytes] | list[bytes], size: int) -> None:
    # Named by its writer, so that remove_orphans can tell a dead writer's (on a shared filesystem, this host's).
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}@{socket.gethostname()}")
    f = None
    if size >= POOL_MIN_BYTES and _pool_usable(path.parent):
        f = _claim_pooled(path.parent, size, tmp)
    try:
        if f is None:
            f = open(tmp, "wb")
        with f:
            for chunk in chunks:
                f.write(chunk)
            f.truncate()  # a pool file may have been longer
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _claim_pooled(blob_dir: Path, size: int, target: Path) -> Any:
    """A pool file nobody maps any more, renamed to ``target`` and open for writing; None if there is none.

    Renaming claims it (a concurrent writer's rename of the same file fails); the write lease then
    proves no reader still maps it. Smallest fitting file first, else the largest (it grows).
    """
    try:
        entries = [(e.stat().st_size, e.path) for e in os.scandir(blob_dir / POOL_DIR) if e.is_file()]
    except OSError:
        return None
    entries.sort(key=lambda e: (e[0] < size, e[0] if e[0] >= size else -e[0]))
    for _, pooled in entries:
        try:
            os.rename(pooled, target)
        except OSError:
            continue  # another writer took it
        try:
            f = open(target, "r+b")
        except OSError:
            target.unlink(missing_ok=True)
            return None
        try:
            fcntl.fcntl(f.fileno(), fcntl.F_SETLEASE, fcntl.F_WRLCK)
            fcntl.fcntl(f.fileno(), fcntl.F_SETLEASE, fcntl.F_UNLCK)
        except OSError as exc:
            f.close()
            target.unlink(missing_ok=True)  # its pages go when its last mapping does
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                continue  # still mapped by a reader
            log.debug("no file leases in %s (%s): blobs are written fresh", blob_dir, exc)
            return None
        return f
    return None


def recycle(path: Path) -> None:
    """Remove a consumed blob: into the pool while it has room (readers may still map it), else deleted."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size >= POOL_MIN_BYTES and _pool_usable(path.parent):
        pool = path.parent / POOL_DIR
        try:
            pool.mkdir(mode=0o700, exist_ok=True)
            pooled = [e.stat().st_size for e in os.scandir(pool) if e.is_file()]
            if len(pooled) < POOL_MAX_FILES and sum(pooled) + size <= POOL_MAX_BYTES:
                os.rename(path, pool / ("r-" + os.urandom(8).hex()))
                return
        except OSError:
            pass  # raced or unwritable: deleting is always right
    path.unlink(missing_ok=True)


def remove_orphans(blob_dir: Path) -> int:
    """Delete the half-written blobs of writers that died (a container killed mid-write), and the arena segments
    of writers that are gone once nobody holds their values; returns how many blobs."""
    from nbmodal_wire import shared_arena

    shared_arena.sweep(blob_dir)
    removed = 0
    try:
        entries = list(os.scandir(blob_dir))
    except OSError:
        return 0
    for entry in entries:
        match = _PARTIAL.fullmatch(entry.name)
        if match is None or match.group(2) != socket.gethostname() or pid_alive(int(match.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass  # finished or removed meanwhile
    return removed



def clear_pool(blob_dir: Path) -> None:
    """Delete the pool's files (a new agent starts without one), and the arena segments of writers that are gone."""
    from nbmodal_wire import shared_arena

    shared_arena.sweep(blob_dir)
    try:
        for entry in os.scandir(blob_dir / POOL_DIR):
            try:
                os.unlink(entry.path)
            except OSError:
                pass  # claimed meanwhile
    except OSError:
        pass  # no pool


def read_blob(path: Path, delete: bool = False) -> Any:
    """Unpickle a blob file, mapping its buffers instead of copying them (from the writer's arena, or the file)."""
    mapped: mmap.mmap | bytes = b""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
            if pool_enabled():
                try:  # one call maps every page in: cheaper than a fault per page when the value is used
                    mapped.madvise(MADV_POPULATE_READ)
                except OSError:
                    pass  # before Linux 5.14: pages are mapped as they are touched
    value = decode_blob_bytes(memoryview(mapped), path.parent)
    if delete:
        # After decoding: a region in an arena is leased by then, so it stays ours once its file is gone.
        # The mapping outlives the file; the pool reuses it only once unmapped.
        recycle(path)
    return value


def decode_blob_bytes(content: memoryview, blob_dir: Path | None = None) -> Any:
    """Unpickle a blob's content; one that refers to an arena is read from it (in ``blob_dir``'s)."""
    (header_length,) = _LENGTH.unpack_from(content, 0)
    offset = _LENGTH.size
    data_length, buffer_lengths, *arena = pickle.loads(content[offset:offset + header_length])
    offset += header_length
    data = content[offset:offset + data_length]
    if arena:
        if blob_dir is None:
            raise ValueError("this blob refers to an arena on the agent's machine; fetch it with GetBlob")
        from nbmodal_wire import shared_arena

        views = shared_arena.reader().lease(blob_dir, shared_arena.Ref.from_tuple(arena[0]))
        return pickle.loads(data, buffers=views)
    offset += data_length
    buffers = []
    for length in buffer_lengths:
        buffers.append(content[offset:offset + length])
        offset += length
    return pickle.loads(data, buffers=buffers)


def content_chunks(path: Path) -> Iterator[bytes]:
    """A blob file's content in whole-value form (a value in an arena copied out), in pieces of CHUNK_BYTES."""
    with open(path, "rb") as f:
        arena = _arena_header(f)
        if arena is None:
            f.seek(0)
            while data := f.read(CHUNK_BYTES):
                yield data
            return
        data_length, ref = arena
        data = f.read(data_length)
    from nbmodal_wire import shared_arena

    views = shared_arena.reader().lease(path.parent, ref)
    encoded = Encoded(data=data, buffers=[pickle.PickleBuffer(v) for v in views])
    del views
    pending = bytearray()
    for chunk in encoded.chunks():
        pending += chunk
        if len(pending) >= CHUNK_BYTES:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


class _PlainUnpickler(pickle.Unpickler):
    """Tuples, lists, numbers and strings only: a blob's header, read by an agent that runs no client code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a blob header names {module}.{name}")


def _arena_header(f: Any) -> tuple[int, shared_arena.Ref] | None:
    """(data length, arena reference) if the open blob file ``f`` refers to an arena, else None (read past the
    header then). Any content is safe here: a blob store holds what clients sent."""
    size = os.fstat(f.fileno()).st_size
    if size >= POOL_MIN_BYTES:
        return None  # an arena's blob file holds only a pickle: a whole value is larger
    from nbmodal_wire import shared_arena

    head = f.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (header_length,) = _LENGTH.unpack(head)
    if header_length > size - _LENGTH.size:
        return None
    try:
        header = _PlainUnpickler(io.BytesIO(f.read(header_length))).load()
        if not (isinstance(header, tuple) and len(header) == 3):
            return None
        return int(header[0]), shared_arena.Ref.from_tuple(header[2])
    except Exception:  # noqa: BLE001  (not a blob of ours: any bytes a client stored)
        return None

"""Volume files on the agent's own machine: copied directly, checked with BLAKE3 (remote_agent/volume_fast_path.py).

The client copies into a staging file the agent gives (``copy_file_range``: the kernel copies, no
bytes cross gRPC) while a second thread hashes the source with BLAKE3; the agent hashes the staged
copy itself and places it only if the two agree. A download reads the volume's file directly and
hashes each chunk in a thread while the caller writes the previous one. Anything that keeps this
path from working here (the agent's files not visible, ``NBMODAL_VOLUME_LOCAL=0``) falls back to
the gRPC transfer.

    if on_agent_machine(connection):
        sent = upload_local(client, "ckpt", Path("w.pt"), "/w.pt", force=False)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbmodal._runtime.connection import in_container
from nbmodal.hosts import LOCAL
from nbmodal_wire import pb
from nbmodal_wire.transfer_digest import StreamDigest, file_blake3

log = logging.getLogger(__name__)

PIECE_BYTES = 64 << 20  # one copy_file_range call: small enough for a live progress bar
READ_BYTES = 8 << 20
_NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)


def on_agent_machine(connection: Any) -> bool:
    """Whether volume files can be copied directly: the notebook's own local agent, not turned off.

    Example::

        on_agent_machine(volume._connection())
    """
    return (connection.name == LOCAL and not in_container()
            and os.environ.get("NBMODAL_VOLUME_LOCAL", "1") != "0")


def upload_local(client: Any, volume: str, local: Path, remote_path: str, force: bool,
                 progress: Callable[[int], None] | None = None) -> bool | None:
    """Copy ``local`` into the volume through a staging file; False if that content was there, None to
    fall back to gRPC (the staging file is not reachable from here). Raises the agent's refusal
    (``AgentError``, "... is not its source ...") when the copy does not match its source."""
    staged = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_STAGE, name=volume, path=remote_path)).file
    try:
        target = open(staged.local_path, "r+b", buffering=0)  # noqa: SIM115 - closed below, before the commit
    except OSError as exc:  # another mount namespace or user: the agent's files aren't ours to write
        log.info("volume fast path unavailable (%s); uploading %s over gRPC", exc, local)
        return None
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="nbmodal-blake3") as pool:
            source_digest = pool.submit(file_blake3, local)  # both cores: the kernel copies, BLAKE3 hashes
            with target, open(local, "rb", buffering=0) as source:
                _copy(source, target, progress)
            digest = source_digest.result()
    except BaseException:  # a failed copy (unreadable source, a full disk) leaves no staging file behind
        with contextlib.suppress(OSError):
            os.unlink(staged.local_path)
        raise
    placed = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_COMMIT, name=volume, path=remote_path,
                                                 local_path=staged.local_path, blake3=digest, force=force)).file
    return not placed.exists


def read_local(client: Any, volume: str, path: str) -> Iterator[bytes] | None:
    """The file's content in chunks, read directly and checked against the agent's BLAKE3 of it;
    None to fall back to gRPC (the file is not reachable from here)."""
    info = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_READ, name=volume, path=path)).file
    try:
        source = open(info.local_path, "rb")  # noqa: SIM115 - the generator below closes it
    except OSError as exc:
        log.info("volume fast path unavailable (%s); reading %s over gRPC", exc, path)
        return None
    return _checked_chunks(source, info, volume)


def read_local_into(client: Any, volume: str, path: str, fileobj: Any,
                    progress: Callable[[int], None] | None = None) -> int | None:
    """Write the file into ``fileobj`` straight from the volume's file, checked against the agent's BLAKE3
    of it; the number of bytes, or None to fall back to gRPC (the file is not reachable from here)."""
    info = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_READ, name=volume, path=path)).file
    try:
        source = open(info.local_path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        log.info("volume fast path unavailable (%s); reading %s over gRPC", exc, path)
        return None
    digest = StreamDigest()
    buffers = (bytearray(READ_BYTES), bytearray(READ_BYTES))  # reused: no fresh pages to fault in per chunk
    size = turn = 0
    with source, ThreadPoolExecutor(1, thread_name_prefix="nbmodal-blake3") as pool:
        hashing: Future | None = None
        # the buffer read into is never the one being hashed (the other one, of the previous chunk)
        while count := source.readinto(buffers[turn]):
            view = memoryview(buffers[turn])[:count]
            turn ^= 1
            if hashing is not None:  # the previous chunk is hashed before this one
                hashing.result()
            hashing = pool.submit(digest.update, view)  # hashes while this chunk is written
            fileobj.write(view)
            size += count
            if progress:
                progress(size)
        if hashing is not None:
            hashing.result()
    check_read(info, volume, size, digest)
    return size


def check_read(info: pb.VolumeFile, volume: str, size: int, digest: StreamDigest) -> None:
    """Raise unless ``size`` bytes hashing to ``digest`` are the file ``info`` (VOLUME_LOCAL_READ) describes."""
    if size != info.size or digest.hexdigest() != info.blake3:
        raise OSError(f"checksum mismatch reading {info.path!r} from volume {volume!r}: the file changed "
                      f"while it was read ({size} bytes read, {info.size} expected); read it again")


def _checked_chunks(source: Any, info: pb.VolumeFile, volume: str) -> Iterator[bytes]:
    digest = StreamDigest()
    size = 0
    with source, ThreadPoolExecutor(1, thread_name_prefix="nbmodal-blake3") as pool:
        hashing: Future | None = None
        while data := source.read(READ_BYTES):
            if hashing is not None:
                hashing.result()
            hashing = pool.submit(digest.update, data)  # hashes while the caller writes this chunk
            size += len(data)
            yield data
        if hashing is not None:
            hashing.result()
    check_read(info, volume, size, digest)


def _copy(source: Any, target: Any, progress: Callable[[int], None] | None) -> None:
    """All of ``source`` into ``target`` by the kernel (``copy_file_range``), else through a buffer."""
    done = 0
    try:
        if not hasattr(os, "copy_file_range"):  # not Linux: the buffered copy below
            raise OSError(errno.ENOSYS, "copy_file_range is not available")
        while count := os.copy_file_range(source.fileno(), target.fileno(), PIECE_BYTES):
            done += count
            if progress:
                progress(done)
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY:
            raise
        os.lseek(source.fileno(), done, os.SEEK_SET)
        os.lseek(target.fileno(), done, os.SEEK_SET)
        while data := os.read(source.fileno(), READ_BYTES):
            view = memoryview(data)
            while view:
                view = view[os.write(target.fileno(), view):]
            done += len(data)
            if progress:
                progress(done)

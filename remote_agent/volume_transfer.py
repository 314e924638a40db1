"""Moving files into and out of volumes over gRPC, checked end to end with SHA-256.

An upload (VolumeUpload) is a stream of ``VolumeChunk``: the first names the
file (volume, path, SHA-256 of its whole content, and the byte it resumes
at), every chunk carries data. The data is appended to the volume's partial
file for that content (``VolumeStore.partial_path``), so an upload that was
cut off resumes where it stopped: the client learns the offset from
``VolumeStore.stat_for_upload``. Once the content's SHA-256 matches, the file
is renamed into place; a half-written file is never visible. A *staged* upload (a replica's
commit, ``replicas.py``) stays there, by content, until the home applies the commit.

A download (VolumeDownload) streams the file from an offset and ends with a
chunk naming the file, its size and the SHA-256 of its whole content, which
the client checks against what it received.

Reading, writing and hashing run in the agent's I/O threads, off the event loop.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

from nbmodal_wire import pb
from remote_agent.request_errors import CONFLICT, CORRUPT, INVALID, NOT_FOUND
from remote_agent.storage import StoreError
from remote_agent.volumes import CHUNK_BYTES, VolumeStore


class VolumeTransfers:
    """Uploads into and downloads out of the volumes of one ``VolumeStore``."""

    def __init__(self, volumes: VolumeStore, in_io_thread: Callable[..., Awaitable[Any]]) -> None:
        self.volumes = volumes
        self._io = in_io_thread

    async def receive(self, chunks: AsyncIterator[pb.VolumeChunk]) -> pb.VolumeFile:
        """Take one upload; raises ``StoreError`` for a bad path, a wrong offset or a checksum mismatch."""
        volumes, io = self.volumes, self._io
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            raise StoreError(INVALID, "an upload starts with a chunk that names its file; none came") from None
        meta = first.file
        await io(volumes.resolve, meta.name, meta.path)  # refuse a bad path before taking data
        partial = await io(volumes.partial_path, meta.name, meta.sha256)
        there = await io(_size_or_zero, partial)
        if meta.offset != there:
            raise StoreError(CONFLICT, f"upload of {meta.path!r} resumes at byte {there}, not {meta.offset}")
        digest = await io(hash_prefix, partial, there)
        with open(partial, "ab") as f:
            if first.data:
                await io(_write_and_hash, f, digest, first.data)
            async for chunk in chunks:
                await io(_write_and_hash, f, digest, chunk.data)
            await io(os.fsync, f.fileno())
        if digest.hexdigest() != meta.sha256:
            partial.unlink(missing_ok=True)
            raise StoreError(CORRUPT, f"checksum mismatch for {meta.path!r}: sent {meta.sha256}, "
                                      f"got {digest.hexdigest()}")
        if meta.stage:  # a replica's commit: kept by content until its VOLUME_APPLY puts it in place
            return pb.VolumeFile(name=meta.name, path=meta.path, size=meta.size, sha256=meta.sha256, stage=True)
        real = await io(volumes.finish_upload, meta.name, meta.path, partial)
        volumes.remember_checksum(real, meta.sha256)
        return pb.VolumeFile(name=meta.name, path=meta.path, size=real.stat().st_size, sha256=meta.sha256)

    async def send(self, name: str, path: str, offset: int = 0) -> AsyncIterator[pb.VolumeChunk]:
        """The file's content from ``offset``, then a chunk with its size and SHA-256 (raises ``StoreError``)."""
        io = self._io
        real = await io(self.volumes.resolve, name, path)
        if not real.is_file():
            raise StoreError(NOT_FOUND, f"no file {path!r} in volume {name!r}")
        digest = await io(hash_prefix, real, offset)
        with open(real, "rb") as f:
            f.seek(offset)
            while data := await io(_read_and_hash, f, digest):
                yield pb.VolumeChunk(data=data)
        yield pb.VolumeChunk(file=pb.VolumeFile(name=name, path=path, size=real.stat().st_size,
                                                sha256=digest.hexdigest()))


def hash_prefix(path: Path, length: int) -> hashlib._Hash:
    """SHA-256 state after the first ``length`` bytes of a file (to resume an upload or a download)."""
    digest = hashlib.sha256()
    if length == 0:
        return digest
    with open(path, "rb") as f:
        remaining = length
        while remaining and (chunk := f.read(min(CHUNK_BYTES, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _write_and_hash(f: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    f.write(data)
    digest.update(data)


def _read_and_hash(f: BinaryIO, digest: hashlib._Hash) -> bytes:
    data = f.read(CHUNK_BYTES)
    digest.update(data)
    return data

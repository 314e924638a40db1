"""File digests for volume transfers: SHA-256, the content address, and BLAKE3 for the local fast path.

``file_sha256`` is the one SHA-256 of a file's content that the client, the agent and Slurm jobs' node
copies compare (version manifests, replicas, resumable uploads). BLAKE3 only checks transfers on the
agent's machine, where SHA-256 on one core (about 1.5-2 GB/s here) is slower than the copy itself, while
BLAKE3 spreads over every core (about 13 GB/s here).

    address = file_sha256(Path("weights.pt"))
    digest = file_blake3(Path("weights.pt"))
    stream = StreamDigest()
    stream.update(b"chunk")
    stream.hexdigest()
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

CHUNK_BYTES = 4 << 20


def file_sha256(path: Path | str) -> str:
    """SHA-256 (hex) of a file's whole content, read in 4 MiB pieces.

    Example::

        file_sha256("/tmp/a.bin")
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _hasher() -> Any:
    import blake3  # imported here: only direct transfers (local, or through the system ssh) need it

    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def file_blake3(path: Path | str) -> str:
    """BLAKE3 (hex) of a file's whole content, read through a memory map by all cores.

    Example::

        file_blake3("/tmp/a.bin")
    """
    hasher = _hasher()
    if os.path.getsize(path):  # an empty file can't be mapped; its digest is the empty input's
        hasher.update_mmap(os.fspath(path))
    return hasher.hexdigest()


class StreamDigest:
    """BLAKE3 of data seen in pieces, in order (``update`` releases the GIL, so it can run in a thread).

    Example::

        d = StreamDigest(); d.update(b"ab"); d.hexdigest()
    """

    def __init__(self) -> None:
        self._hasher = _hasher()

    def update(self, data: bytes | memoryview) -> None:
        self._hasher.update(data)

    def hexdigest(self) -> str:
        return str(self._hasher.hexdigest())

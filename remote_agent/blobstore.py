"""The agent's blob files: large values kept in ``blobs/`` in its state dir.

What a blob file holds (and how ids look) is ``nbmodal_wire.blobs``, shared
with the client, which reads and writes these files itself when it runs on the
agent's machine. This module is the agent's side: streaming blobs in from and
out to clients on other machines (PutBlob, GetBlob; a value kept in a writer's
arena, ``nbmodal_wire/shared_arena.py``, goes out whole), and removing the blobs
nobody fetched.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from nbmodal_wire import blobs
from remote_agent.request_errors import NOT_FOUND, RequestError

log = logging.getLogger(__name__)

STALE_AFTER_S = 24 * 3600


class BlobNotFound(RequestError):
    """A blob id that isn't (or is no longer) on this agent."""

    code = NOT_FOUND


class BlobStore:
    """The blob files in one directory.

    Pieces are read and written on the event loop as they arrive: each is a few MiB at most,
    to or from the page cache.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(exist_ok=True)

    def path(self, blob_id: str) -> Path:
        """The file of an existing blob; raises ``BlobNotFound`` for an unknown or malformed id."""
        path = self.root / blob_id
        if not blobs.valid_blob_path(path):
            raise BlobNotFound(f"no blob {blob_id!r} on this agent")
        return path

    async def put(self, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        """Write a blob from its pieces; it appears under its id only once complete. Returns (id, size)."""
        blob_id = blobs.new_blob_id()
        path = self.root / blob_id
        partial = path.with_name(path.name + ".partial")
        size = 0
        try:
            with open(partial, "wb") as f:
                async for data in chunks:
                    f.write(data)
                    size += len(data)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return blob_id, size

    async def get(self, blob_id: str, delete: bool = False) -> AsyncIterator[bytes]:
        """A blob's content in pieces of ``blobs.CHUNK_BYTES``; with ``delete``, removed once all was read."""
        path = self.path(blob_id)
        for data in blobs.content_chunks(path):  # a value in a writer's arena is copied out of it
            yield data
        if delete:
            blobs.recycle(path)

    def remove_stale(self) -> int:
        """Remove blobs nobody fetched (a client that died, a detached run never attached) after a day,
        and the recycled files an earlier agent kept (``blobs.recycle``)."""
        blobs.clear_pool(self.root)
        blobs.remove_orphans(self.root)
        cutoff = time.time() - STALE_AFTER_S
        removed = 0
        for path in self.root.iterdir():
            if path.name == blobs.POOL_DIR:
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                pass  # gone meanwhile, or not ours to remove: either way nothing to do
        if removed:
            log.info("removed %d blob(s) nobody fetched for a day", removed)
        return removed


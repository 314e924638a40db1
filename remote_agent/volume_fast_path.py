"""The fast path for volume files: the client moves the bytes itself, the agent checks and places them.

Through gRPC a file crosses the agent in 4 MiB messages and is hashed with SHA-256 on both ends
(about 0.1x ``cp``). A client on this machine (the same user: it already reads and writes the
agent's blob files), or a client of an SSH host that reaches the staging file through its own
``ssh`` login as the agent's user (nbmodal/_runtime/volume_ssh_bulk.py), instead:

* upload: asks for a staging file (LOCAL_STAGE, in ``.partial/<volume>/``, on the volume's file
  system so the final move is a rename), copies its file into it (``copy_file_range``, or ``ssh
  host dd`` from another machine) while hashing its source with BLAKE3, then asks for LOCAL_COMMIT
  with that digest;
* download: asks for the file's real path and BLAKE3 (LOCAL_READ) and reads it (directly, or
  ``ssh host cat``), hashing as it goes.

An agent whose environment lacks ``blake3`` (one installed before it was a dependency) refuses
LOCAL_STAGE and LOCAL_READ as CONFLICT, and the client uses gRPC.

Integrity here means: a file becomes visible in the volume only once the agent has hashed the
bytes that will be visible and found them equal to what the client hashed at its source, so a copy
that went wrong, or a staging file changed between the copy and the commit, is refused (CORRUPT)
and the volume is left as it was; the agent first renames the staging file to a name the client
was never given, so what it verified is what it places. Nothing the client says is stored: the
SHA-256 that version manifests and replicas compare is computed by the agent from the stored
bytes when it is first needed (``VolumeStore.checksum``, at the next commit), never taken from the
client. Durability is the commit's (it syncs), as for files a container writes into the volume.
This guards against accidents, not against the same user, who can write the volume directory anyway.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nbmodal_wire import pb
from nbmodal_wire.transfer_digest import file_blake3
from remote_agent.request_errors import CONFLICT, CORRUPT, INVALID, NOT_FOUND
from remote_agent.storage import StoreError
from remote_agent.volumes import VolumeStore

STAGING_PREFIX = "local-"
_STAGING_NAME = re.compile(r"local-[0-9a-f]{16}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
STALE_AFTER_S = 6 * 3600  # a staging file no commit came for (its client died) is removed after this
_CACHE_LIMIT = 10_000
_SET_ASIDE_BYTES = 64 << 20  # a replaced file this large is unlinked after the commit answers
_HAS_BLAKE3: bool | None = None  # looked up once, at the first direct transfer


class VolumeFastPath:
    """LOCAL_STAGE, LOCAL_COMMIT and LOCAL_READ for the volumes of one ``VolumeStore``."""

    def __init__(self, volumes: VolumeStore, in_io_thread: Callable[..., Awaitable[Any]]) -> None:
        self.volumes = volumes
        self._io = in_io_thread
        self._digests: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> BLAKE3

    async def call(self, request: pb.VolumeRequest) -> pb.VolumeReply:
        """Serve one of the three LOCAL_* operations (raises ``StoreError``)."""
        if request.op == pb.VOLUME_LOCAL_STAGE:
            return pb.VolumeReply(file=await self._io(self.stage, request.name, request.path))
        if request.op == pb.VOLUME_LOCAL_COMMIT:
            return pb.VolumeReply(file=await self._io(self.commit, request.name, request.path,
                                                      request.local_path, request.blake3, request.force))
        return pb.VolumeReply(file=await self._io(self.read, request.name, request.path))

    def stage(self, name: str, path: str) -> pb.VolumeFile:
        """An empty staging file for an upload to ``path``, and whether a file is there now (its size)."""
        real = self.volumes.resolve(name, path)  # refuse a bad path before the client copies anything
        _require_blake3()
        if real.is_dir():
            raise StoreError(INVALID, f"{path!r} is a directory in volume {name!r}")
        folder = self.volumes.partials / name
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        staging = folder / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
        os.close(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        exists = real.is_file()
        return pb.VolumeFile(name=name, path=path, local_path=str(staging), exists=exists,
                             size=real.stat().st_size if exists else 0)

    def commit(self, name: str, path: str, local_path: str, claimed: str, force: bool) -> pb.VolumeFile:
        """Move a staging file to ``path`` once its BLAKE3 is ``claimed``; ``exists`` if that content was there."""
        staged = self._staging_file(name, local_path)
        held = staged.with_name(staged.name + ".verifying")  # a name the client never had
        os.rename(staged, held)
        try:
            if not _HEX_DIGEST.fullmatch(claimed):
                raise StoreError(INVALID, f"{claimed!r} is not a BLAKE3 hex digest (64 lowercase hex digits)")
            digest = file_blake3(held)
            if digest != claimed:
                raise StoreError(CORRUPT, f"the copy of {path!r} for volume {name!r} is not its source: BLAKE3 "
                                          f"{digest[:16]}… here, {claimed[:16]}… at the source (changed during or "
                                          f"after the copy); nothing was written to the volume — upload it again")
            real = self.volumes.resolve(name, path)
            size = held.stat().st_size
            if not force and real.is_file() and real.stat().st_size == size and self.digest(real) == digest:
                return pb.VolumeFile(name=name, path=path, size=size, blake3=digest, exists=True)
            old = _second_name(real, staged.parent)
            placed = self.volumes.finish_upload(name, path, held)
            if old is not None:
                _unlink_in_background(old)
            self._remember(placed, digest)
            return pb.VolumeFile(name=name, path=path, size=size, blake3=digest)
        finally:
            held.unlink(missing_ok=True)

    def read(self, name: str, path: str) -> pb.VolumeFile:
        """The real path of a volume file, its size and BLAKE3, for a client that reads it directly."""
        real = self.volumes.resolve(name, path)
        if not real.is_file():
            raise StoreError(NOT_FOUND, f"no file {path!r} in volume {name!r}")
        _require_blake3()
        digest = self.digest(real)
        return pb.VolumeFile(name=name, path=path, local_path=str(real), size=real.stat().st_size, blake3=digest)

    def digest(self, real: Path) -> str:
        """BLAKE3 of a volume file, remembered while its size and mtime stay the same."""
        info = real.stat()
        key = (str(real), info.st_size, info.st_mtime_ns)
        if key not in self._digests:
            digest = file_blake3(real)
            if real.stat().st_mtime_ns != info.st_mtime_ns:  # written while hashed: don't remember a mix
                return digest
            self._remember_key(key, digest)
        return self._digests[key]

    def _remember(self, real: Path, digest: str) -> None:
        info = real.stat()
        self._remember_key((str(real), info.st_size, info.st_mtime_ns), digest)

    def _remember_key(self, key: tuple[str, int, int], digest: str) -> None:
        if len(self._digests) >= _CACHE_LIMIT:
            self._digests.clear()
        self._digests[key] = digest

    def _staging_file(self, name: str, local_path: str) -> Path:
        staged = Path(local_path)
        folder = self.volumes.partials / name
        if staged.parent != folder or not _STAGING_NAME.fullmatch(staged.name):
            raise StoreError(INVALID, f"{local_path!r} is not a staging file of volume {name!r} "
                                      f"(ask VOLUME_LOCAL_STAGE for one)")
        try:
            info = staged.lstat()
        except FileNotFoundError:
            raise StoreError(NOT_FOUND, f"staging file {local_path!r} is gone (committed already, or removed "
                                        f"after {STALE_AFTER_S // 3600} h); upload the file again") from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(INVALID, f"staging file {local_path!r} is not a regular file")
        return staged


def _second_name(real: Path, folder: Path) -> Path | None:
    """A hard link in the staging folder to a large file about to be replaced, else None.

    Replacing a file unlinks it, and freeing a large file's blocks and cached pages takes a while
    (0.3 s for a recently written 1 GiB file here); with a second name the replace is only a rename
    and the blocks are freed by ``_unlink_in_background``. An agent that stops first leaves the link
    for ``_remove_stale`` (its name starts with the staging prefix).
    """
    try:
        if real.stat(follow_symlinks=False).st_size < _SET_ASIDE_BYTES or not real.is_file():
            return None
        link = folder / f"{STAGING_PREFIX}{secrets.token_hex(8)}.replaced"
        os.link(real, link, follow_symlinks=False)
    except OSError:  # no file there, or hard links not allowed: the replace frees the blocks itself
        return None
    return link


def _unlink_in_background(path: Path) -> None:
    threading.Thread(target=path.unlink, kwargs={"missing_ok": True}, name="volume-unlink", daemon=True).start()


def _require_blake3() -> None:
    """Refuse (CONFLICT: the client falls back to gRPC) where ``blake3`` is not installed."""
    global _HAS_BLAKE3
    if _HAS_BLAKE3 is None:
        _HAS_BLAKE3 = importlib.util.find_spec("blake3") is not None
    if not _HAS_BLAKE3:
        raise StoreError(CONFLICT, "this agent's environment has no blake3 module, which checks direct volume "
                                   "transfers; use the gRPC transfer (reinstall the agent to get it)")


def _remove_stale(folder: Path) -> None:
    cutoff = time.time() - STALE_AFTER_S
    for entry in os.scandir(folder):
        if entry.name.startswith(STAGING_PREFIX):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:  # committed or removed meanwhile
                pass

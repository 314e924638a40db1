"""Replica volumes: syncing from the home host and committing to it, over the client's relay.

A volume's home holds its committed versions (``volume_versions.py``); another host that
mounts it keeps a replica: the files of the version it last synced, plus what its
containers wrote since. This module moves content between the two, through the route
to the home that the client keeps up (``store_routes.py``):

* **sync** (before a run that mounts the volume, ``reload()``): ask the home for its
  latest version's manifest (path, SHA-256, size); fetch only files whose content this
  replica lacks, a few at once (content found elsewhere in the replica is copied locally); remove files
  the home removed. Downloads land in ``.partial/<volume>/<sha256>`` first, resume from
  what is there after a cut, and are checked against the home's SHA-256 before they
  are renamed into place. Files written here and not committed yet are kept.
* **commit** (``commit()``, the end of every run that mounted it): upload the changed
  files' content to the home, a few at once, staged by SHA-256 (resumable, checksummed, skipped
  when the home has it), then ask the home to apply them as its next version, then sync. Last
  commit wins per file; the home keeps what a commit replaced until its next version.

When the home can't be reached, a run starts on the replica's last synced version (the
run's output says so), and its writes stay in the replica, marked pending, until a
commit reaches the home; a replica that never synced can't be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from nbmodal_wire import pb
from remote_agent.request_errors import CORRUPT
from remote_agent.storage import StoreError
from remote_agent.store_routes import HomeUnreachable, StoreRoutes
from remote_agent.volume_transfer import hash_prefix
from remote_agent.volume_versions import HOME, REPLICA, Copy, VolumeVersions
from remote_agent.volumes import CHUNK_BYTES, VolumeStore

log = logging.getLogger(__name__)

Notify = Callable[[str], None]
# Files a sync downloads, or a commit uploads, at once (each its own stream through the relay).
PARALLEL_DOWNLOADS = 4


class Replicas:
    """The replica side of this host's volumes."""

    def __init__(self, volumes: VolumeStore, versions: VolumeVersions, routes: StoreRoutes,
                 in_io_thread: Callable[..., Awaitable[Any]]) -> None:
        self.volumes = volumes
        self.versions = versions
        self.routes = routes
        self._io = in_io_thread
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def lock(self, name: str) -> asyncio.Lock:
        """Held while a sync or commit changes this replica (a Slurm job's commit places files under it)."""
        return self._lock(name)

    def home_of(self, name: str) -> str:
        """The other host that is this volume's home; "" when this host is (or the volume is unknown)."""
        if self.versions.exists(name):
            copy = self.versions.load(name)
            return copy.home if copy.role == REPLICA else ""
        return self.routes.home_of("volume", name)

    # -- around runs -------------------------------------------------------------------

    async def before_run(self, mounts: list[pb.VolumeMount], notify: Notify) -> None:
        """Each mounted replica brought to the home's latest version (or, with the home away, its last one)."""
        for name in sorted({mount.volume for mount in mounts}):
            home = await self._io(self.home_of, name)
            if home:
                await self.sync(name, home, notify)
            else:
                await self._io(self.volumes.volume_dir, name)  # NOT_FOUND with the names there are

    async def after_run(self, mounts: list[pb.VolumeMount], notify: Notify) -> None:
        """Commit on exit: the home's new version, or a replica's writes sent to its home."""
        for name in sorted({mount.volume for mount in mounts}):
            try:
                home = await self._io(self.home_of, name)
                if home:
                    await self.commit(name, notify)
                else:
                    await self._io(self.versions.commit_home, name, self.routes.self_name)
            except StoreError as exc:
                notify(f"volume {name!r}: the commit at the end of the run failed: {exc}")
        await self._io(os.sync)

    # -- sync ----------------------------------------------------------------------------

    async def sync(self, name: str, home: str, notify: Notify | None = None) -> int:
        """Bring the replica to the home's latest committed version; returns the version it has.

        With ``notify`` (a run starting) an unreachable home leaves the replica as it is, said through
        ``notify``; without, it raises ``HomeUnreachable``."""
        async with self._lock(name):
            if not await self._io(self.versions.exists, name):
                await self._io(self.versions.make_replica, name, home)
            copy = await self._io(self.versions.load, name)
            try:
                with _lost_link_as_unreachable(name, home):
                    if copy.pending:
                        await self._push(name, copy, home)
                    return await self._pull(name, copy, home)
            except HomeUnreachable as exc:
                if notify is None or copy.version == 0:
                    raise
                notify(f"volume {name!r}: {exc} This run sees this host's replica at version {copy.version}.")
                return copy.version

    async def _pull(self, name: str, copy: Copy, home: str) -> int:
        reply = await self.routes.relay(home, "VolumeCall", pb.VolumeRequest(op=pb.VOLUME_MANIFEST, name=name),
                                        f"volume {name!r}")
        now = await self._io(self.versions.scan, name, copy)
        changed_here = {p for p, v in now.items() if copy.files.get(p, [None])[0] != v[0]}
        changed_here |= {p for p in copy.files if p not in now}
        if reply.version == copy.version and not (set(copy.files) ^ {c.path for c in reply.manifest}):
            await self._io(self.versions.save, name, copy)
            return copy.version
        stub, metadata = self.routes.peer(home, f"volume {name!r}")
        by_content = {v[0]: p for p, v in now.items()}
        files: dict[str, list] = {}
        missing: list[pb.VolumeChange] = []
        for change in reply.manifest:
            files[change.path] = [change.sha256, change.size]
            if change.path in changed_here or now.get(change.path, [None])[0] == change.sha256:
                continue  # written here and not committed yet (it wins at its commit), or already here
            if change.sha256 in by_content:
                await self._io(self._copy_within, name, by_content[change.sha256], change.path)
            else:
                missing.append(change)
        # A few files at once: one stream at a time leaves the relay's links idle between chunks. Each content
        # is downloaded once (its partial file is named by its SHA-256); other paths with it are copies.
        first: dict[str, pb.VolumeChange] = {}
        for change in missing:
            first.setdefault(change.sha256, change)
        async def fetch(change: pb.VolumeChange) -> None:
            files[change.path] = list(await self._download(stub, metadata, name, change))

        await _a_few_at_once([functools.partial(fetch, change) for change in first.values()])
        for change in missing:
            if first[change.sha256] is not change:
                await self._io(self._copy_within, name, first[change.sha256].path, change.path)
        for path in copy.files:
            if path not in files and path in now and path not in changed_here:
                await self._io(self._remove, name, path)  # removed at the home
        copy.version, copy.files = reply.version, files
        await self._io(self.versions.scan, name, copy)  # the stat cache of what just arrived
        await self._io(self.versions.save, name, copy)
        log.info("volume %s: replica at version %d of %s", name, copy.version, home)
        return copy.version

    async def _download(self, stub, metadata, name: str, change: pb.VolumeChange) -> tuple[str, int]:
        """One file from the home into place, resuming a partial download of the same content."""
        io = self._io
        real = await io(self.volumes.resolve, name, change.path)
        partial = await io(self.volumes.partial_path, name, change.sha256)
        for attempt in range(2):
            offset = partial.stat().st_size if partial.exists() else 0
            if offset > change.size:
                offset = 0
                partial.unlink()
            digest = await io(hash_prefix, partial, offset)
            final = None
            with open(partial, "ab") as f:
                async for chunk in stub.VolumeDownload(pb.VolumeRequest(name=name, path=change.path, offset=offset),
                                                       metadata=metadata):
                    if chunk.HasField("file"):
                        final = chunk.file
                        break
                    await io(_write_and_hash, f, digest, chunk.data)
                await io(os.fsync, f.fileno())
            if final is not None and digest.hexdigest() == final.sha256:
                await io(self._place, partial, real, final.sha256)
                return final.sha256, final.size
            partial.unlink(missing_ok=True)  # damaged, or a resumed prefix of content the home since replaced
            if attempt == 1 or offset == 0:
                raise StoreError(CORRUPT, f"volume {name!r}: {change.path!r} arrived damaged from its home "
                                          f"(checksum mismatch); nothing was replaced")
        raise AssertionError("unreachable")

    def _place(self, partial, real, sha256: str) -> None:
        if real.is_dir():
            shutil.rmtree(real)
        real.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, real)
        self.volumes.remember_checksum(real, sha256)

    def _copy_within(self, name: str, source: str, destination: str) -> None:
        real = self.volumes.resolve(name, destination)
        real.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.volumes.resolve(name, source), real)

    def _remove(self, name: str, path: str) -> None:
        self.volumes.resolve(name, path).unlink(missing_ok=True)

    # -- commit --------------------------------------------------------------------------

    async def commit(self, name: str, notify: Notify | None = None) -> int:
        """Send the replica's changes to its home (the home's next version) and sync; returns the version.

        With the home away the changes stay here, pending: with ``notify`` (a run ending) that is said
        there, else ``HomeUnreachable`` is raised."""
        async with self._lock(name):
            copy = await self._io(self.versions.load, name)
            home = copy.home
            try:
                with _lost_link_as_unreachable(name, home):
                    await self._push(name, copy, home)
                    return await self._pull(name, copy, home)
            except HomeUnreachable as exc:
                _, changes = await self._io(self.versions.changes, name, copy)
                copy.pending = copy.pending or bool(changes)
                await self._io(self.versions.save, name, copy)
                if notify is None:
                    raise
                notify(f"volume {name!r}: {exc} This run's writes stay in this host's replica and are committed "
                       f"by the next commit, reload or run here that reaches {home!r}.")
                return copy.version

    async def _push(self, name: str, copy: Copy, home: str) -> None:
        now, changes = await self._io(self.versions.changes, name, copy)
        if not changes:
            copy.pending = False
            return
        what = f"volume {name!r}"
        stub, metadata = self.routes.peer(home, what)
        # Each content once (the home stages it under its SHA-256), a few at a time, as a sync downloads.
        contents = {change.sha256: change for change in changes if not change.deleted}
        await _a_few_at_once([functools.partial(self._stage, stub, metadata, name, change)
                              for change in contents.values()])
        reply = await self.routes.relay(home, "VolumeCall", pb.VolumeRequest(
            op=pb.VOLUME_APPLY, name=name, base_version=copy.version, changes=changes,
            from_host=self.routes.self_name), what)
        copy.files.update({c.path: [c.sha256, c.size] for c in changes if not c.deleted})
        for change in changes:
            if change.deleted:
                copy.files.pop(change.path, None)
        copy.pending = False
        log.info("volume %s: committed %d change(s) to %s as version %d", name, len(changes), home, reply.version)

    async def _stage(self, stub, metadata, name: str, change: pb.VolumeChange) -> None:
        """Upload one file's content to the home, by SHA-256 (resuming, or skipped when it is there)."""
        state = (await stub.VolumeCall(pb.VolumeRequest(op=pb.VOLUME_STAT, name=name, path=change.path,
                                                        sha256=change.sha256), metadata=metadata)).file
        if state.exists:
            return
        offset = state.offset if state.offset <= change.size else 0
        real = await self._io(self.volumes.resolve, name, change.path)
        io = self._io

        async def chunks() -> AsyncIterator[pb.VolumeChunk]:
            yield pb.VolumeChunk(file=pb.VolumeFile(name=name, path=change.path, size=change.size,
                                                    sha256=change.sha256, offset=offset, stage=True))
            with open(real, "rb") as f:
                f.seek(offset)
                while data := await io(f.read, CHUNK_BYTES):
                    yield pb.VolumeChunk(data=data)

        await stub.VolumeUpload(chunks(), metadata=metadata)

    # -- what a client sees ------------------------------------------------------------

    def copy_info(self, name: str) -> pb.StoreInfo:
        info = self.versions.info(name)
        if info.role == HOME:
            info.home = self.routes.self_name
        return info


async def _a_few_at_once(transfers: list[Callable[[], Awaitable[None]]]) -> None:
    """Run the transfers, PARALLEL_DOWNLOADS at a time; the first failure stops the others (what arrived is
    kept: transfers resume) and is raised."""
    streams = asyncio.Semaphore(PARALLEL_DOWNLOADS)

    async def one(transfer: Callable[[], Awaitable[None]]) -> None:
        async with streams:
            await transfer()

    tasks = [asyncio.ensure_future(one(transfer)) for transfer in transfers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


@contextlib.contextmanager
def _lost_link_as_unreachable(name: str, home: str):
    """A transfer to or from the home cut off on the way is the home being away (what arrived is kept)."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise StoreError(CORRUPT if exc.code() == grpc.StatusCode.DATA_LOSS else "conflict",
                             f"volume {name!r} at its home {home!r}: {exc.details()}") from None
        raise HomeUnreachable(f"volume {name!r} lives on host {home!r}, which can't be reached now "
                              f"({exc.code().name}: {exc.details()}).") from None


def _write_and_hash(f, digest: hashlib._Hash, data: bytes) -> None:
    f.write(data)
    digest.update(data)

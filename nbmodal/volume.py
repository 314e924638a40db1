"""``nbmodal.Volume``: a named directory on a host, mounted into containers, named as in Modal.

    vol = nbmodal.Volume.from_name("ckpt", create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file("config.yaml", "/config.yaml")
    # %%remote volumes=ckpt:/ckpt   -> the container reads /ckpt/config.yaml

A volume has a home host (where it was made); other hosts that mount it keep a
replica. Every container of a host shares that host's directory, so writes are
visible there at once; ``commit()`` makes them the volume's next version (a
replica's changed files go to the home; a run's writes are committed when it
ends, also on cancel and timeout); ``reload()`` brings this host's copy to the
latest committed version, and a run on a host whose replica is behind syncs
before it starts (remote_agent/replicas.py). Transfers stream in 4 MiB chunks, checked with SHA-256 end to
end; an interrupted upload resumes, and a file whose content is already
there is skipped. On the agent's own machine files are copied directly instead, checked with BLAKE3
(``_runtime/volume_local.py``). Every method that talks to the host has an ``.aio`` twin, as in
Modal (``await vol.commit.aio()``, ``async for chunk in vol.read_file.aio(path)``), and
``batch_upload()`` and ``ephemeral()`` work with ``async with`` too.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nbmodal._aio import WithAio, call_in_thread
from nbmodal._runtime import homes
from nbmodal._runtime.connection import in_container
from nbmodal._runtime.named import Ephemeral, NamedObject, warn_cloud_only
from nbmodal._runtime.volume_local import on_agent_machine, read_local, read_local_into, upload_local
from nbmodal._runtime.volume_ssh_bulk import bulk_route, read_ssh_into, upload_ssh
from nbmodal_wire import node_copies, pb
from nbmodal_wire.transfer_digest import file_sha256

CHUNK_BYTES = 4 << 20


@dataclass
class FileEntry:
    """One entry of ``Volume.listdir``."""

    path: str
    type: str  # "file", "directory" or "symlink"
    size: int
    mtime: float


class Volume(NamedObject[pb.VolumeOp]):
    """A named Volume on a host; get one with ``Volume.from_name`` or ``Volume.ephemeral``."""

    _CREATE, _LOOKUP, _DELETE = pb.VOLUME_CREATE, pb.VOLUME_LOOKUP, pb.VOLUME_DELETE
    _KIND = "volume"

    @classmethod
    def from_name(cls, name: str, *, namespace: Any = None, environment_name: str | None = None,
                  create_if_missing: bool = False, version: int | None = None, client: Any = None,
                  host: str | None = None) -> Volume:
        """The Volume called ``name`` on ``host``; ``version`` (Modal's volume format) has no effect here.

        Example::

            ckpt = nbmodal.Volume.from_name("ckpt", create_if_missing=True)
        """
        _warn_version(version)
        return super().from_name(name, namespace=namespace, environment_name=environment_name,
                                 create_if_missing=create_if_missing, client=client, host=host)

    @classmethod
    def lookup(cls, name: str, namespace: Any = None, client: Any = None, environment_name: str | None = None,
               create_if_missing: bool = False, version: int | None = None, *, host: str | None = None) -> Volume:
        """Modal's older spelling of ``from_name`` (deprecated there); the same here."""
        return cls.from_name(name, namespace=namespace, environment_name=environment_name,
                             create_if_missing=create_if_missing, version=version, client=client, host=host)

    @classmethod
    def ephemeral(cls, *, client: Any = None, environment_name: str | None = None,
                  version: int | None = None, host: str | None = None, _heartbeat_sleep: float = 0.0) -> Ephemeral:
        """A Volume for the ``with`` (or ``async with``) block only.

        Example::

            with nbmodal.Volume.ephemeral() as scratch:
                scratch.listdir("/")
        """
        _warn_version(version)
        warn_cloud_only(environment_name=environment_name, client=client)
        return Ephemeral(cls(f"ephemeral-{secrets.token_hex(6)}", host))

    @WithAio.on_class
    def rename(cls: Any, old_name: str, new_name: str, *, client: Any = None, environment_name: str | None = None,
               host: str | None = None) -> None:
        """Give the volume ``old_name`` the name ``new_name``."""
        warn_cloud_only(environment_name=environment_name, client=client)
        volume = cls(old_name, host)
        home = volume._connection().name
        volume._call(pb.VOLUME_RENAME, new_name=new_name)
        if not in_container():  # the home moves with the name (replicas elsewhere keep the old name)
            homes.forget(cls._KIND, old_name)
            homes.record(cls._KIND, new_name, home)

    # -- reading -----------------------------------------------------------------

    @WithAio.iterating  # Modal's returns a list, its .aio an async iterator
    def listdir(self, path: str = "/", recursive: bool = False) -> list[FileEntry]:
        reply = self._call(pb.VOLUME_LISTDIR, path=path, recursive=recursive)
        return [FileEntry(e.path, e.type, e.size, e.mtime) for e in reply.entries]

    @WithAio.iterating
    def iterdir(self, path: str = "/", *, recursive: bool = True) -> Iterator[FileEntry]:
        """The entries under ``path`` (by default, all of them, recursively)."""
        return iter(self.listdir(path, recursive=recursive))

    @WithAio  # a generator: async for chunk in vol.read_file.aio(path)
    def read_file(self, path: str) -> Iterator[bytes]:
        """The file's content in chunks (never all in memory), checked against its SHA-256 (on the agent's
        machine: read directly, checked against its BLAKE3)."""
        connection = self._connection()
        client = connection.client()
        if on_agent_machine(connection) and (direct := read_local(client, self.name, path)) is not None:
            yield from direct
            return
        digest = hashlib.sha256()
        for chunk in client.volume_download(pb.VolumeRequest(name=self.name, path=path)):
            if chunk.HasField("file"):
                if chunk.file.sha256 != digest.hexdigest():
                    raise OSError(f"checksum mismatch reading {path!r} from volume {self.name!r}")
                return
            digest.update(chunk.data)
            yield chunk.data

    @WithAio
    def read_file_into_fileobj(self, path: str, fileobj: IO[bytes], progress_cb: Callable[..., Any] | None = None,
                               *, progress: bool = False) -> int:
        """Write the file into ``fileobj``; returns the number of bytes.

        ``progress_cb`` (Modal's) is called with ``advance=`` each chunk's size; ``progress=True`` draws a bar.
        """
        size = next((e.size for e in self.listdir(path) if e.type == "file"), 0)
        bar = Progress(f"get {path}", size) if progress else None
        connection = self._connection()
        if on_agent_machine(connection):
            direct = read_local_into(connection.client(), self.name, path, fileobj,
                                     _progress_callback(progress_cb, bar))
            if direct is not None:
                if bar:
                    bar.close()
                return direct
        elif (route := bulk_route(connection, size)) is not None:  # an SSH host: through the system ssh
            direct = read_ssh_into(connection.client(), route, self.name, path, fileobj,
                                   _progress_callback(progress_cb, bar))
            if direct is not None:
                if bar:
                    bar.close()
                return direct
        written = 0
        for chunk in self.read_file(path):
            fileobj.write(chunk)
            written += len(chunk)
            if progress_cb is not None:
                progress_cb(advance=len(chunk))
            if bar:
                bar.update(written)
        if bar:
            bar.close()
        return written

    # -- writing -------------------------------------------------------------------

    def batch_upload(self, force: bool = False, progress: bool = False) -> _BatchUpload:
        """Upload files and directories; they appear when the ``with`` (or ``async with``) block ends.

        Example::

            with vol.batch_upload() as batch:
                batch.put_file("weights.pt", "/weights.pt")
                batch.put_directory("data/", "/data")
        """
        return _BatchUpload(self, force, progress)

    @WithAio
    def remove_file(self, path: str, recursive: bool = False) -> None:
        self._call(pb.VOLUME_REMOVE, path=path, recursive=recursive)
        self._commit_from_outside()

    @WithAio
    def copy_files(self, src_paths: list[str], dst_path: str, recursive: bool = False) -> None:
        """Copy files or directories within the volume (into ``dst_path`` if it is a directory).

        Directories are copied with their content whatever ``recursive`` says (Modal asks for it).
        """
        self._call(pb.VOLUME_COPY, paths=list(src_paths), path=dst_path)
        self._commit_from_outside()

    @WithAio
    def commit(self) -> None:
        """Make what was written the volume's next version (runs do this when they end).

        At the home host that is a new version of its directory; on another host, the replica's changed
        files go to the home first (only changed content moves). Raises when the home can't be reached
        (the writes stay in the replica, committed by the next commit that reaches it).

        Example::

            vol.commit()
        """
        if node_copies.is_node_copy(self.name):  # in a Slurm job with this volume copied to its node
            node_copies.commit(self.name)
            return
        self._call(pb.VOLUME_COMMIT)

    @WithAio
    def reload(self) -> None:
        """Bring this host's copy to the latest committed version (at the home there is nothing to fetch).

        Example::

            vol.reload()
        """
        if node_copies.is_node_copy(self.name):  # in a Slurm job: the agent's copy, then this node's
            node_copies.reload(self.name)
            return
        self._call(pb.VOLUME_MANIFEST)

    def versions(self) -> dict[str, dict[str, Any]]:
        """The volume's version on each configured host that has a copy (see ``nbmodal volume ls NAME``).

        Example::

            ckpt.versions()   # {"gpu1": {"role": "home", "version": 7, ...}, "gpu2": {"role": "replica", ...}}
        """
        from nbmodal._runtime.volume_versions import versions_on_hosts

        return versions_on_hosts(self.name)

    def _commit_from_outside(self) -> None:
        # Modal applies a notebook's changes to a volume at once: here they become the next version.
        if not in_container():
            self._call(pb.VOLUME_COMMIT)

    def _send(self, client, op: pb.VolumeOp, fields: dict[str, Any]) -> pb.VolumeReply:
        return client.volume_call(pb.VolumeRequest(op=op, name=self.name, **fields))


class _BatchUpload:
    """What ``batch_upload()`` gives: files and directories to send, sent when its block ends."""

    def __init__(self, volume: Volume, force: bool, progress: bool) -> None:
        self.volume = volume
        self.force = force
        self.progress = progress
        self._files: list[tuple[Path, str]] = []
        self._spooled: tempfile.TemporaryDirectory | None = None  # file objects' content, as files

    def put_file(self, local_file: str | os.PathLike | IO[bytes], remote_path: str, mode: int | None = None) -> None:
        """Send a local file (a path, or a binary file object as Modal takes) to ``remote_path``.

        ``mode`` is accepted for Modal code; files here get the volume's default permissions.
        """
        if mode is not None:
            from nbmodal._function_options import warn_no_effect

            warn_no_effect("mode", "files in a volume get the host's default permissions")
        if hasattr(local_file, "read"):
            local = self._spool(local_file)  # type: ignore[arg-type]
        else:
            local = Path(local_file)
        if not local.is_file():
            raise FileNotFoundError(f"no local file {local}")
        self._files.append((local, remote_path))

    def put_directory(self, local_path: str | os.PathLike, remote_path: str, recursive: bool = True) -> None:
        """Send the files of a local directory (and, with ``recursive``, of its subdirectories)."""
        local = Path(local_path)
        if not local.is_dir():
            raise NotADirectoryError(f"no local directory {local}")
        files = local.rglob("*") if recursive else local.glob("*")
        for file in sorted(p for p in files if p.is_file()):
            self._files.append((file, remote_path.rstrip("/") + "/" + file.relative_to(local).as_posix()))

    def run(self) -> list[str]:
        """Upload each file, then commit; returns the remote paths that were sent (skipped ones are not)."""
        try:
            sent = [remote for local, remote in self._files if upload_file(self.volume, local, remote, self.force,
                                                                           self.progress)]
            self.volume._commit_from_outside()
            return sent
        finally:
            self._discard_spooled()

    def _spool(self, fileobj: IO[bytes]) -> Path:
        """A file object's content in a temporary file: uploads are checksummed and resumed from files."""
        if self._spooled is None:
            self._spooled = tempfile.TemporaryDirectory(prefix="nbmodal-upload-")
        path = Path(self._spooled.name) / f"{len(self._files)}"
        with open(path, "wb") as out:
            shutil.copyfileobj(fileobj, out)
        return path

    def _discard_spooled(self) -> None:
        if self._spooled is not None:
            self._spooled.cleanup()
            self._spooled = None

    def __enter__(self) -> _BatchUpload:
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if exc_type is None:  # a block that failed uploads nothing
            self.run()
        else:
            self._discard_spooled()

    async def __aenter__(self) -> _BatchUpload:
        return self

    async def __aexit__(self, exc_type: Any, *exc_info: Any) -> None:
        await call_in_thread(self.__exit__, exc_type, *exc_info)


def upload_file(volume: Volume, local: Path, remote_path: str, force: bool = False, progress: bool = False) -> bool:
    """Upload one file, resuming an interrupted upload of the same content; False if it was already there.

    On the agent's own machine the file is copied straight into the volume (``_runtime/volume_local.py``).
    """
    connection = volume._connection()
    client = connection.client()
    size = local.stat().st_size
    if on_agent_machine(connection):
        bar = Progress(f"put {remote_path}", size) if progress else None
        sent = upload_local(client, volume.name, local, remote_path, force, bar.update if bar else None)
        if bar:
            bar.close()
        if sent is not None:
            return sent
    elif (route := bulk_route(connection, size)) is not None:  # an SSH host: the bytes through the system ssh
        bar = Progress(f"put {remote_path}", size) if progress else None
        sent = upload_ssh(client, route, volume.name, local, remote_path, force, bar.update if bar else None)
        if bar:
            bar.close()
        if sent is not None:
            return sent
    sha256 = file_sha256(local)
    state = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_STAT, name=volume.name, path=remote_path,
                                                sha256=sha256)).file
    if state.exists and not force:
        return False
    bar = Progress(f"put {remote_path}", size) if progress else None

    def chunks() -> Iterator[pb.VolumeChunk]:
        yield pb.VolumeChunk(file=pb.VolumeFile(name=volume.name, path=remote_path, size=size, sha256=sha256,
                                                offset=state.offset))
        sent = state.offset
        with open(local, "rb") as f:
            f.seek(state.offset)
            while data := f.read(CHUNK_BYTES):
                sent += len(data)
                if bar:
                    bar.update(sent)
                yield pb.VolumeChunk(data=data)

    client.volume_upload(chunks())
    if bar:
        bar.close()
    return True


def _progress_callback(progress_cb: Callable[..., Any] | None, bar: Progress | None) -> Callable[[int], None] | None:
    """Modal's ``progress_cb(advance=...)`` and the bar, fed from a running total of bytes."""
    if progress_cb is None and bar is None:
        return None
    done = [0]

    def update(total: int) -> None:
        if progress_cb is not None:
            progress_cb(advance=total - done[0])
        done[0] = total
        if bar:
            bar.update(total)

    return update


class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second (one line in a notebook too)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, max(total, 1)
        self.started = self._drawn = time.monotonic()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if time.monotonic() - self._drawn >= 0.1:
            self._draw("\r")

    def close(self) -> None:
        self._draw("\r")
        sys.stderr.write("\n")
        sys.stderr.flush()

    def _draw(self, prefix: str) -> None:
        self._drawn = time.monotonic()
        rate = self.done / max(self._drawn - self.started, 1e-6) / 1e6
        width = 30
        filled = int(width * self.done / self.total)
        sys.stderr.write(f"{prefix}{self.label}: [{'#' * filled}{'.' * (width - filled)}] "
                         f"{100 * self.done / self.total:5.1f}% {self.done / 2**20:.1f}/{self.total / 2**20:.1f} MiB "
                         f"{rate:.0f} MB/s")
        sys.stderr.flush()


def _warn_version(version: int | None) -> None:
    if version is not None:
        from nbmodal._function_options import warn_no_effect

        warn_no_effect("version", "Modal's volume format; a volume here is a directory on its host")

"""``nbmodal.Volume``: a named directory on a host, mounted into containers, named as in Modal.

    vol = nbmodal.Volume.from_name("ckpt", create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file("config.yaml", "/config.yaml")
    # %%remote volumes=ckpt:/ckpt   -> the container reads /ckpt/config.yaml

A volume is a directory on its host that every container there mounting it
shares: writes are visible to other containers and to ``read_file`` at once;
``commit()`` makes them durable (and a run's writes are committed when it
ends, also on cancel and timeout); ``reload()`` has nothing to fetch, so it
never fails. Transfers stream in 4 MiB chunks, checked with SHA-256 end to
end; an interrupted upload resumes, and a file whose content is already
there is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nbmodal._runtime.connection import storage_connection
from nbmodal._runtime.named import NamedObject
from nbmodal_wire import pb

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

    @staticmethod
    def rename(old_name: str, new_name: str, *, host: str | None = None) -> None:
        Volume(old_name, host)._call(pb.VOLUME_RENAME, new_name=new_name)

    # -- reading -----------------------------------------------------------------

    def listdir(self, path: str = "/", recursive: bool = False) -> list[FileEntry]:
        reply = self._call(pb.VOLUME_LISTDIR, path=path, recursive=recursive)
        return [FileEntry(e.path, e.type, e.size, e.mtime) for e in reply.entries]

    def read_file(self, path: str) -> Iterator[bytes]:
        """The file's content in chunks (never all in memory), checked against its SHA-256."""
        client = storage_connection(self.host).client()
        digest = hashlib.sha256()
        for chunk in client.volume_download(pb.VolumeRequest(name=self.name, path=path)):
            if chunk.HasField("file"):
                if chunk.file.sha256 != digest.hexdigest():
                    raise OSError(f"checksum mismatch reading {path!r} from volume {self.name!r}")
                return
            digest.update(chunk.data)
            yield chunk.data

    def read_file_into_fileobj(self, path: str, fileobj: IO[bytes], progress: bool = False) -> int:
        """Write the file into ``fileobj``; returns the number of bytes."""
        size = next((e.size for e in self.listdir(path) if e.type == "file"), 0)
        bar = Progress(f"get {path}", size) if progress else None
        written = 0
        for chunk in self.read_file(path):
            fileobj.write(chunk)
            written += len(chunk)
            if bar:
                bar.update(written)
        if bar:
            bar.close()
        return written

    # -- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def batch_upload(self, force: bool = False, progress: bool = False) -> Iterator[_BatchUpload]:
        """Upload files and directories; they appear when the block ends.

        Example::

            with vol.batch_upload() as batch:
                batch.put_file("weights.pt", "/weights.pt")
                batch.put_directory("data/", "/data")
        """
        batch = _BatchUpload(self, force, progress)
        yield batch
        batch.run()

    def remove_file(self, path: str, recursive: bool = False) -> None:
        self._call(pb.VOLUME_REMOVE, path=path, recursive=recursive)

    def copy_files(self, src_paths: list[str], dst_path: str) -> None:
        """Copy files or directories within the volume (into ``dst_path`` if it is a directory)."""
        self._call(pb.VOLUME_COPY, paths=list(src_paths), path=dst_path)

    def commit(self) -> None:
        """Make what was written durable on the host's disk (runs do this when they end)."""
        self._call(pb.VOLUME_COMMIT)

    def reload(self) -> None:
        """Kept for Modal code: containers share the volume's directory, so there is nothing to fetch."""
        self._call(pb.VOLUME_LOOKUP)

    def _send(self, client, op: pb.VolumeOp, fields: dict[str, Any]) -> pb.VolumeReply:
        return client.volume_call(pb.VolumeRequest(op=op, name=self.name, **fields))


class _BatchUpload:
    def __init__(self, volume: Volume, force: bool, progress: bool) -> None:
        self.volume = volume
        self.force = force
        self.progress = progress
        self._files: list[tuple[Path, str]] = []

    def put_file(self, local_file: str | os.PathLike, remote_path: str) -> None:
        local = Path(local_file)
        if not local.is_file():
            raise FileNotFoundError(f"no local file {local}")
        self._files.append((local, remote_path))

    def put_directory(self, local_path: str | os.PathLike, remote_path: str) -> None:
        local = Path(local_path)
        if not local.is_dir():
            raise NotADirectoryError(f"no local directory {local}")
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            self._files.append((file, remote_path.rstrip("/") + "/" + file.relative_to(local).as_posix()))

    def run(self) -> list[str]:
        """Upload each file; returns the remote paths that were sent (skipped ones are not)."""
        return [remote for local, remote in self._files if upload_file(self.volume, local, remote, self.force,
                                                                         self.progress)]


def upload_file(volume: Volume, local: Path, remote_path: str, force: bool = False, progress: bool = False) -> bool:
    """Upload one file, resuming an interrupted upload of the same content; False if it was already there."""
    client = storage_connection(volume.host).client()
    sha256 = file_sha256(local)
    size = local.stat().st_size
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


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

"""Volumes: named directories on a host, mounted into containers.

A volume is ``volumes/<name>/`` in the agent's state dir. Every path a client
names is resolved inside it: ``..``, NUL bytes and symlinks that lead out of
the volume are refused, so nothing outside a volume is ever read or written.

This module is the store: volumes, paths, listing, removing, copying, and the
store's side of an upload (where its partial file is, what is there already,
moving it into place). The transfer protocol itself, resumable and checked
with SHA-256, is ``volume_transfer.py``. An upload goes to
``.partial/<volume>/<sha256>`` first and is renamed into place once its
checksum matches. Checksums of files written through the API are remembered,
so an upload of content that is already there is skipped.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from nbmodal_wire.transfer_digest import file_sha256
from remote_agent.storage import StoreError, check_name

CHUNK_BYTES = 4 << 20


@dataclass
class Entry:
    path: str
    type: str
    size: int
    mtime: float


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.partials = root / ".partial"
        self.partials.mkdir(parents=True, exist_ok=True)
        self._checksums: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> sha256

    # -- volumes -----------------------------------------------------------------

    def volume_dir(self, name: str) -> Path:
        check_name("volume", name)
        _check_not_internal(name)
        path = self.root / name
        if not path.is_dir():
            existing = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise StoreError("not_found", f"no volume named {name!r} on this host (existing: "
                                          f"{', '.join(existing) or 'none'}); pass create_if_missing=True to make it")
        return path

    def create(self, name: str) -> bool:
        check_name("volume", name)
        _check_not_internal(name)
        path = self.root / name
        if path.is_dir():
            return False
        path.mkdir()
        return True

    def delete(self, name: str) -> None:
        shutil.rmtree(self.volume_dir(name))
        shutil.rmtree(self.partials / name, ignore_errors=True)

    def rename(self, name: str, new_name: str) -> None:
        source = self.volume_dir(name)
        check_name("volume", new_name)
        _check_not_internal(new_name)
        if (self.root / new_name).exists():
            raise StoreError("invalid", f"a volume named {new_name!r} already exists")
        source.rename(self.root / new_name)

    def list_volumes(self) -> list[tuple[str, int, float]]:
        """(name, bytes used, created) of each volume."""
        volumes = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.startswith("."):
                used = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
                volumes.append((path.name, used, path.stat().st_ctime))
        return volumes

    # -- paths ---------------------------------------------------------------------

    def resolve(self, name: str, path: str) -> Path:
        """The real path of ``path`` inside the volume; refuses anything that would leave it."""
        base = self.volume_dir(name).resolve()
        if "\x00" in path:
            raise StoreError("invalid", f"path {path!r} contains a NUL byte")
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise StoreError("invalid", f"path {path!r} goes outside the volume ('..' is not allowed)")
        candidate = base.joinpath(*parts)
        real = candidate.resolve()  # follows symlinks, also in parents
        if real != base and base not in real.parents:
            raise StoreError("invalid", f"path {path!r} leads outside volume {name!r} (through a symlink)")
        return real

    def _relative(self, name: str, real: Path) -> str:
        relative = str(real.relative_to(self.volume_dir(name).resolve()))
        return "/" if relative == "." else "/" + relative

    # -- listing, removing, copying ------------------------------------------------

    def listdir(self, name: str, path: str, recursive: bool) -> list[Entry]:
        real = self.resolve(name, path)
        if not real.exists():
            raise StoreError("not_found", f"no file or directory {path!r} in volume {name!r}")
        if real.is_file():
            return [self._entry(name, real)]
        children = sorted(real.rglob("*") if recursive else real.iterdir())
        return [self._entry(name, child) for child in children]

    def _entry(self, name: str, path: Path) -> Entry:
        info = path.lstat()
        kind = "symlink" if stat.S_ISLNK(info.st_mode) else "directory" if stat.S_ISDIR(info.st_mode) else "file"
        return Entry(self._relative(name, path.parent.resolve() / path.name), kind, info.st_size, info.st_mtime)

    def remove(self, name: str, path: str, recursive: bool) -> None:
        real = self.resolve(name, path)
        if real == self.volume_dir(name).resolve():
            raise StoreError("invalid", f"can't remove the root of volume {name!r}; use Volume.delete")
        if not real.exists():
            raise StoreError("not_found", f"no file or directory {path!r} in volume {name!r}")
        if real.is_dir():
            if not recursive and any(real.iterdir()):
                raise StoreError("invalid", f"{path!r} is a non-empty directory: pass recursive=True")
            shutil.rmtree(real)
        else:
            real.unlink()

    def copy(self, name: str, sources: list[str], destination: str) -> None:
        target = self.resolve(name, destination)
        into_dir = target.is_dir() or destination.endswith("/") or len(sources) > 1
        if into_dir:
            target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            real = self.resolve(name, source)
            if not real.exists():
                raise StoreError("not_found", f"no file or directory {source!r} in volume {name!r}")
            dest = target / real.name if into_dir else target
            dest.parent.mkdir(parents=True, exist_ok=True)
            if real.is_dir():
                shutil.copytree(real, dest, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(real, dest)

    # -- transfers -------------------------------------------------------------------

    def checksum(self, real: Path) -> str:
        info = real.stat()
        key = (str(real), info.st_size, info.st_mtime_ns)
        if key not in self._checksums:
            self._checksums[key] = file_sha256(real)
        return self._checksums[key]

    def stat_for_upload(self, name: str, path: str, sha256: str) -> tuple[bool, int, int, str]:
        """(complete file with this content exists, its size, bytes of a resumable upload, sha256 there)."""
        real = self.resolve(name, path)
        exists, size, there = False, 0, ""
        if real.is_file():
            size = real.stat().st_size
            there = self.checksum(real)
            exists = there == sha256
        partial = self.partial_path(name, sha256) if sha256 else None
        offset = partial.stat().st_size if partial is not None and partial.exists() else 0
        return exists, size, offset, there

    def partial_path(self, name: str, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise StoreError("invalid", f"{sha256!r} is not a SHA-256 hex digest")
        folder = self.partials / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder / sha256

    def finish_upload(self, name: str, path: str, partial: Path) -> Path:
        real = self.resolve(name, path)
        if real.is_dir():
            raise StoreError("invalid", f"{path!r} is a directory in volume {name!r}")
        real.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, real)
        return real

    def remember_checksum(self, real: Path, sha256: str) -> None:
        info = real.stat()
        self._checksums[(str(real), info.st_size, info.st_mtime_ns)] = sha256


def _check_not_internal(name: str) -> None:
    """Names starting with '.' are the store's own directories (``.partial``), never a volume."""
    if name.startswith("."):
        raise StoreError("invalid", f"volume name {name!r} is not allowed: names starting with '.' are reserved "
                                    f"for the volume store's own directories")

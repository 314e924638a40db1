"""Versions of a volume on this host: the home's committed versions, a replica's synced one.

Every volume has one *home* host; other hosts keep a *replica*. This module is the
synchronous, on-disk half (it runs in the agent's volume I/O threads); the network
half, which moves content between a replica and its home, is ``replicas.py``.

For each volume, ``volumes/.meta/<name>.json`` holds this host's copy:

* ``role`` ("home" or "replica"), ``home`` (the home's host name, for a replica),
* ``version``: at the home the latest committed version; at a replica the version it
  last synced (its *base*),
* ``files``: path -> [sha256, size] of that version (a replica's local changes are the
  differences between its directory and these),
* ``stat``: path -> [size, mtime_ns, sha256] of the local file when last hashed, so a
  scan rehashes only files whose size or mtime changed (as rsync's quick check),
* ``pending``: a replica's writes that could not be committed yet (home unreachable),
* at the home, ``overwritten``: the files the last commit replaced or removed, kept under
  ``volumes/.overwritten/<name>/`` until the next version is made, so that of two
  concurrent commits of one file the first is never lost silently (``recover``).

A volume without a meta file (made before versions existed) is its host's own: home, version 0.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbmodal_wire import pb
from remote_agent.request_errors import CONFLICT, INVALID, NOT_FOUND
from remote_agent.storage import StoreError
from remote_agent.volumes import VolumeStore

HOME, REPLICA = "home", "replica"
# Commits remembered in a home's log (shown by `nbmodal volume ls NAME`).
LOG_LENGTH = 20


@dataclass
class Copy:
    """This host's copy of one volume (see the module docstring)."""

    role: str = HOME
    home: str = ""
    version: int = 0
    files: dict[str, list] = field(default_factory=dict)
    stat: dict[str, list] = field(default_factory=dict)
    pending: bool = False
    log: list[dict] = field(default_factory=list)
    overwritten: list[dict] = field(default_factory=list)


class VolumeVersions:
    """The copies of this host's volumes, and the commits that change them."""

    def __init__(self, volumes: VolumeStore) -> None:
        self.volumes = volumes
        self.meta_dir = volumes.root / ".meta"
        self.meta_dir.mkdir(exist_ok=True)
        self.overwritten_dir = volumes.root / ".overwritten"
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.Lock())

    # -- the copy's record -------------------------------------------------------

    def load(self, name: str) -> Copy:
        path = self.meta_dir / f"{name}.json"
        try:
            return Copy(**json.loads(path.read_text()))
        except FileNotFoundError:
            return Copy()

    def save(self, name: str, copy: Copy) -> None:
        path = self.meta_dir / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(copy)))
        os.replace(tmp, path)  # a crash leaves the old record or the new one, never half of one

    def exists(self, name: str) -> bool:
        return (self.volumes.root / name).is_dir()

    def make_replica(self, name: str, home: str) -> Copy:
        """An empty replica of ``home``'s volume (its first sync fills it)."""
        self.volumes.create(name)
        copy = Copy(role=REPLICA, home=home)
        self.save(name, copy)
        return copy

    def forget(self, name: str) -> None:
        (self.meta_dir / f"{name}.json").unlink(missing_ok=True)
        shutil.rmtree(self.overwritten_dir / name, ignore_errors=True)

    def renamed(self, name: str, new_name: str) -> None:
        old = self.meta_dir / f"{name}.json"
        if old.exists():
            os.replace(old, self.meta_dir / f"{new_name}.json")

    # -- scanning ------------------------------------------------------------------

    def scan(self, name: str, copy: Copy) -> dict[str, list]:
        """path -> [sha256, size] of every file in the volume now; updates ``copy.stat`` (rehashing only
        files whose size or mtime changed since they were last hashed)."""
        base = self.volumes.volume_dir(name)
        now: dict[str, list] = {}
        stat: dict[str, list] = {}
        for directory, _, names in os.walk(base):
            for filename in names:
                real = Path(directory, filename)
                if real.is_symlink() or not real.is_file():
                    continue  # a symlink is not content: replicas get files only
                relative = "/" + real.relative_to(base).as_posix()
                info = real.stat()
                known = copy.stat.get(relative)
                if known is not None and known[0] == info.st_size and known[1] == info.st_mtime_ns:
                    sha256 = known[2]
                else:
                    sha256 = self.volumes.checksum(real)
                stat[relative] = [info.st_size, info.st_mtime_ns, sha256]
                now[relative] = [sha256, info.st_size]
        copy.stat = stat
        return now

    def changes(self, name: str, copy: Copy) -> tuple[dict[str, list], list[pb.VolumeChange]]:
        """(the files now, what differs from the copy's version): a replica's local changes."""
        now = self.scan(name, copy)
        changed = [pb.VolumeChange(path=p, sha256=v[0], size=v[1]) for p, v in sorted(now.items())
                   if copy.files.get(p, [None])[0] != v[0]]
        changed += [pb.VolumeChange(path=p, deleted=True) for p in sorted(copy.files) if p not in now]
        return now, changed

    # -- at the home ------------------------------------------------------------------

    def commit_home(self, name: str, host: str = "") -> int:
        """Make what is in the home's directory the next version, if it changed; returns the version."""
        with self.lock(name):
            copy = self._home_copy(name)
            return self._commit_locked(name, copy, host)

    def _commit_locked(self, name: str, copy: Copy, host: str) -> int:
        now, changed = self.changes(name, copy)
        if changed:
            copy.version += 1
            copy.files = now
            copy.overwritten = []  # what an earlier commit replaced is kept until this one
            shutil.rmtree(self.overwritten_dir / name, ignore_errors=True)
            self._log(copy, host, changed)
        self.save(name, copy)
        return copy.version

    def manifest(self, name: str) -> tuple[int, list[pb.VolumeChange]]:
        """The latest committed version and its files (what a replica syncs to)."""
        with self.lock(name):
            copy = self._home_copy(name)
            files = [pb.VolumeChange(path=p, sha256=v[0], size=v[1]) for p, v in sorted(copy.files.items())]
            return copy.version, files

    def apply(self, name: str, base_version: int, changes: Iterable[pb.VolumeChange], host: str) -> int:
        """A replica's commit: its changed files (uploaded as staged content) replace the home's; files it
        removed are removed. Last commit wins, per file; what it replaces is kept until the next version."""
        with self.lock(name):
            copy = self._home_copy(name)
            self._commit_locked(name, copy, "")  # the home's own writes first: they are an earlier commit
            changes = list(changes)
            by_content = {v[0]: p for p, v in copy.files.items()}
            for change in changes:
                if not change.deleted:
                    self._check_staged(name, change, by_content)
            kept = self.overwritten_dir / name
            shutil.rmtree(kept, ignore_errors=True)
            overwritten = []
            for change in changes:
                real = self.volumes.resolve(name, change.path)
                previous = copy.files.get(change.path)
                if previous is not None and previous[0] == change.sha256 and not change.deleted:
                    continue  # the same content: nothing to replace
                if real.is_file():
                    target = kept / change.path.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(real, target)  # kept until the next version, by rename (no copy)
                    overwritten.append({"path": change.path, "sha256": previous[0] if previous else "",
                                        "size": target.stat().st_size, "base": base_version})
                if change.deleted:
                    continue
                staged = self.volumes.partials / name / change.sha256
                real.parent.mkdir(parents=True, exist_ok=True)
                if staged.is_file():
                    os.replace(staged, real)
                else:  # the content is in the volume under another path (or was just kept)
                    source = self._content_path(name, change.sha256, by_content, kept)
                    shutil.copy2(source, real)
                self.volumes.remember_checksum(real, change.sha256)
            copy.version += 1
            copy.files = self.scan(name, copy)
            copy.overwritten = [dict(o, version=copy.version, host=host) for o in overwritten]
            self._log(copy, host, changes)
            self.save(name, copy)
            return copy.version

    def recover(self, name: str, path: str, destination: str = "") -> int:
        """Put back a file the last commit replaced or removed (at ``destination``, default its own path),
        as a new version."""
        with self.lock(name):
            copy = self._home_copy(name)
            if not any(o["path"] == path for o in copy.overwritten):
                listed = ", ".join(o["path"] for o in copy.overwritten) or "none"
                raise StoreError(NOT_FOUND, f"the last commit of volume {name!r} overwrote no {path!r} "
                                            f"(overwritten files: {listed}); they are kept until the next commit")
            source = self.overwritten_dir / name / path.lstrip("/")
            real = self.volumes.resolve(name, destination or path)
            real.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, real)
            kept = copy.overwritten  # a recovery is a commit, but what was overwritten stays recoverable
            version = self._commit_locked(name, copy, "recover")
            copy.overwritten = kept
            self.save(name, copy)
            return version

    def _home_copy(self, name: str) -> Copy:
        self.volumes.volume_dir(name)  # NOT_FOUND with the existing names
        copy = self.load(name)
        if copy.role != HOME:
            raise StoreError(CONFLICT, f"volume {name!r} on this host is a replica of host {copy.home!r}'s; "
                                       f"its home is there")
        return copy

    def _check_staged(self, name: str, change: pb.VolumeChange, by_content: dict[str, str]) -> None:
        staged = self.volumes.partials / name / change.sha256
        if staged.is_file() and staged.stat().st_size == change.size:
            return
        if change.sha256 in by_content:
            return
        raise StoreError(INVALID, f"commit of volume {name!r}: the content of {change.path!r} "
                                  f"({change.sha256[:12]}…) was not uploaded first")

    def _content_path(self, name: str, sha256: str, by_content: dict[str, str], kept: Path) -> Path:
        path = by_content[sha256]
        real = self.volumes.resolve(name, path)
        if real.is_file():
            return real
        return kept / path.lstrip("/")

    @staticmethod
    def _log(copy: Copy, host: str, changes: list[pb.VolumeChange]) -> None:
        copy.log.append({"version": copy.version, "host": host, "time": time.time(),
                         "paths": [c.path for c in changes][:20], "count": len(changes)})
        del copy.log[:-LOG_LENGTH]

    # -- what a client sees ---------------------------------------------------------

    def info(self, name: str) -> pb.StoreInfo:
        copy = self.load(name)
        return pb.StoreInfo(name=name, role=copy.role, home=copy.home, version=copy.version, pending=copy.pending)

    def overwritten(self, name: str) -> list[pb.VolumeChange]:
        return [pb.VolumeChange(path=o["path"], sha256=o["sha256"], size=o["size"], version=o["version"],
                                host=o["host"]) for o in self.load(name).overwritten]

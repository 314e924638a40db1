"""Node-local copies of volumes in a Slurm job whose compute node doesn't see the agent's state dir.

The job (``remote_agent/worker/volume_links.py``) keeps each mounted volume in a directory of the node's
temp dir and links the mount path to it. This module moves content between that copy and
the agent's copy of the volume (the home's directory, or the login node's replica), through the job's
tunnel to its agent (``remote_agent/worker/agent_tunnel.py``) with the container token:

* **sync** (the job's start, each run's start, ``reload()``): the agent's manifest of its copy now
  (``VolumeRequest.job_copy``); only files whose content the node copy lacks are downloaded, up to 4 at
  once (content found elsewhere in the copy is copied locally), into ``partial/<sha256>`` first
  (resumed after a cut) and checked with SHA-256 before they are renamed into place; files the agent
  no longer has are removed. Files written on the node and not committed yet are kept.
* **commit** (each run's end, ``commit()``): the changed files' content is uploaded by SHA-256 (staged;
  skipped when the agent has it, resumed after a cut), then the agent applies the changes to its copy
  (last commit wins, per file; see ``remote_agent/job_copies.py``), which a replica commits on to its home.

The copies live in ``$TMPDIR/nbmodal-<uid>-volumes/<agent>/`` (mode 0700), shared by this user's jobs
on the node that mount the same agent's volumes (as a host's containers share its directory; a flock
keeps their syncs and commits apart), so a later job there finds them synced. Each job registers
itself in ``jobs/``; the last one to leave removes the copies, and a job starting removes the copies no
live job uses (a job Slurm ended, as scancel retires a warm one, can't remove anything itself).

Shared by the worker (which syncs and commits around runs) and ``nbmodal.Volume`` (``commit()`` and
``reload()`` inside the job): ``NBMODAL_NODE_COPIES`` maps each copied volume to its directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal_wire import TOKEN_METADATA_KEY, pb
from nbmodal_wire.pids import pid_alive
from nbmodal_wire.transfer_digest import file_sha256

if TYPE_CHECKING:  # grpc is imported where a copy is synced or committed: every container imports this module
    from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

ENV = "NBMODAL_NODE_COPIES"  # {volume: directory of its node-local copy}
PREFIX = "nbmodal-"  # the copies live in $TMPDIR/nbmodal-<uid>-volumes/<agent>/
JOBS = "jobs"  # in an agent's copies: one empty file "<node>-<pid>" per live job that uses them
PARALLEL_TRANSFERS = 4
CHUNK_BYTES = 4 << 20
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


class NodeCopyError(RuntimeError):
    """A node-local copy could not be synced or committed (the message says which volume and why)."""


@dataclass
class _State:
    version: int = 0
    files: dict[str, list] = field(default_factory=dict)  # the agent's copy when last synced: path -> [sha, size]
    stat: dict[str, list] = field(default_factory=dict)   # path -> [size, mtime_ns, sha] when last hashed


def copies() -> dict[str, str]:
    """The volumes this process works on as node-local copies: name -> directory."""
    return json.loads(os.environ.get(ENV) or "{}")


def is_node_copy(name: str) -> bool:
    return name in copies()


def create(agent_key: str, names: list[str]) -> dict[str, str]:
    """This node's copies of the agent's volumes ``names`` (made empty where new; ``sync`` fills them), used by
    this job from now on, recorded in ``ENV``. ``agent_key`` tells agents apart (their volumes dir)."""
    base = _base()
    root = base / hashlib.sha256(agent_key.encode()).hexdigest()[:16]
    with _node_lock(base):
        for other in base.iterdir():  # copies no live job uses: jobs Slurm ended (scancel retires a warm job)
            if other.is_dir() and other != root and not _users(other):
                shutil.rmtree(other, ignore_errors=True)
        (root / JOBS).mkdir(parents=True, exist_ok=True)
        (root / JOBS / _me()).touch()
    made = copies()
    for name in names:
        directory = root / "volumes" / name
        directory.mkdir(parents=True, exist_ok=True)
        made[name] = str(directory)
    os.environ[ENV] = json.dumps(made)
    return made


def remove_all() -> None:
    """This job is ending (its writes were committed after each run): the copies go unless another live job
    of this user on this node uses them."""
    roots = {Path(d).parent.parent for d in copies().values()}
    if not roots:
        return
    base = _base()
    with _node_lock(base):
        for root in roots:
            (root / JOBS / _me()).unlink(missing_ok=True)
            if not _users(root):
                shutil.rmtree(root, ignore_errors=True)


def _base() -> Path:
    """``$TMPDIR/nbmodal-<uid>-volumes``: this user's, mode 0700 (refused if someone else made it)."""
    base = Path(tempfile.gettempdir()) / f"{PREFIX}{os.getuid()}-volumes"
    base.mkdir(mode=0o700, exist_ok=True)
    info = base.lstat()
    if base.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise NodeCopyError(f"{base} isn't a private directory of this user's; remove it (or set TMPDIR)")
    return base


class _node_lock:
    """Between this user's jobs on this node: making, using and removing copies (flock on a file in base)."""

    def __init__(self, base: Path) -> None:
        self.path = base / ".lock"

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _me() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _users(root: Path) -> list[str]:
    """The live jobs on this node that use ``root`` (registrations of ended ones are removed)."""
    here = socket.gethostname()
    live = []
    for entry in (root / JOBS).glob("*") if (root / JOBS).is_dir() else []:
        host, _, pid = entry.name.rpartition("-")
        if host != here or not pid.isdigit():
            live.append(entry.name)  # another node's (a temp dir on a shared filesystem): not ours to judge
        elif pid_alive(int(pid)):
            live.append(entry.name)
        else:
            entry.unlink(missing_ok=True)
    return live

    return True


def sync(name: str) -> int:
    """Bring the node copy up to the agent's copy now (keeping what was written here); returns its version."""
    with _lock(name), _agent() as (stub, metadata):
        copy = _NodeCopy(name)
        state = copy.load()
        now = copy.scan(state)
        written_here = _changed(state.files, now)
        reply = _call(stub, metadata, pb.VolumeRequest(op=pb.VOLUME_MANIFEST, name=name, job_copy=True), name)
        manifest = {c.path: [c.sha256, c.size] for c in reply.manifest}
        by_content = {v[0]: p for p, v in now.items()}
        downloads = []
        for path, (sha256, size) in manifest.items():
            if path in written_here or now.get(path, [""])[0] == sha256:
                continue
            if sha256 in by_content:  # the content is here under another path: no transfer
                copy.place_copy(by_content[sha256], path)
            else:
                downloads.append((path, sha256, size))
        _a_few_at_once([(copy.download, stub, metadata, path, sha256, size) for path, sha256, size in downloads])
        for path in state.files:
            if path not in manifest and path not in written_here:
                copy.real(path).unlink(missing_ok=True)
        state.files, state.version = manifest, reply.version
        copy.scan(state)
        copy.save(state)
        return state.version


def commit(name: str, *, if_changed: bool = False) -> int:
    """Send what was written in the node copy to the agent's copy (which commits it on); returns the version.

    Nothing written here: ``commit()`` still commits the agent's copy; ``if_changed`` (a run's end, which the
    agent commits itself) does nothing."""
    with _lock(name), _agent() as (stub, metadata):
        copy = _NodeCopy(name)
        state = copy.load()
        now = copy.scan(state)
        changed = _changed(state.files, now)
        if not changed:
            if if_changed:
                return state.version
            reply = _call(stub, metadata, pb.VolumeRequest(op=pb.VOLUME_COMMIT, name=name), name)
            return reply.version
        changes = [pb.VolumeChange(path=p, sha256=now[p][0], size=now[p][1]) if p in now
                   else pb.VolumeChange(path=p, deleted=True) for p in sorted(changed)]
        contents = {c.sha256: c for c in changes if not c.deleted}
        _a_few_at_once([(copy.upload, stub, metadata, c) for c in contents.values()])
        reply = _call(stub, metadata, pb.VolumeRequest(op=pb.VOLUME_APPLY, name=name, job_copy=True,
                                                       base_version=state.version, changes=changes), name)
        for change in changes:
            if change.deleted:
                state.files.pop(change.path, None)
            else:
                state.files[change.path] = [change.sha256, change.size]
        state.version = reply.version
        copy.save(state)
        return state.version


def reload(name: str) -> int:
    """``reload()`` in the job: the agent's copy brought to the latest version (a replica syncs from its
    home), then the node copy synced from it."""
    with _agent() as (stub, metadata):
        _call(stub, metadata, pb.VolumeRequest(op=pb.VOLUME_MANIFEST, name=name), name)
    return sync(name)


class _NodeCopy:
    def __init__(self, name: str) -> None:
        self.name = name
        try:
            self.directory = Path(copies()[name])
        except KeyError:
            raise NodeCopyError(f"volume {name!r} has no node-local copy in this job") from None
        self.root = self.directory.parent.parent
        self.state_path = self.root / "state" / f"{name}.json"
        self.partials = self.root / "partial"

    def load(self) -> _State:
        try:
            return _State(**json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return _State()

    def save(self, state: _State) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, self.state_path)

    def real(self, path: str) -> Path:
        real = (self.directory / path.lstrip("/")).resolve()
        if not real.is_relative_to(self.directory.resolve()):
            raise NodeCopyError(f"volume {self.name!r}: path {path!r} leads out of the volume")
        return real

    def scan(self, state: _State) -> dict[str, list]:
        """path -> [sha256, size] of every file now (rehashing only files whose size or mtime changed)."""
        now: dict[str, list] = {}
        stat: dict[str, list] = {}
        for directory, _, names in os.walk(self.directory):
            for filename in names:
                real = Path(directory, filename)
                if real.is_symlink() or not real.is_file():
                    continue  # as at the agent: a symlink is not content
                relative = "/" + real.relative_to(self.directory).as_posix()
                info = real.stat()
                known = state.stat.get(relative)
                if known is not None and known[0] == info.st_size and known[1] == info.st_mtime_ns:
                    sha256 = known[2]
                else:
                    sha256 = file_sha256(real)
                stat[relative] = [info.st_size, info.st_mtime_ns, sha256]
                now[relative] = [sha256, info.st_size]
        state.stat = stat
        return now

    def place_copy(self, source: str, path: str) -> None:
        real = self.real(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp = real.with_name(f".{real.name}.nbmodal-copy")
        shutil.copy2(self.real(source), tmp)
        os.replace(tmp, real)

    def download(self, stub: AgentStub, metadata: list, path: str, sha256: str, size: int) -> None:
        """One file from the agent's copy, resumed from what a cut-off download left, checked, then placed."""
        import grpc

        self.partials.mkdir(parents=True, exist_ok=True)
        partial = self.partials / sha256
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > size:
            partial.unlink()
            offset = 0
        digest = hashlib.sha256()
        if offset:
            with open(partial, "rb") as f:
                while data := f.read(CHUNK_BYTES):
                    digest.update(data)
        sent = ""
        try:
            with open(partial, "ab") as f:
                for chunk in stub.VolumeDownload(pb.VolumeRequest(name=self.name, path=path, offset=offset),
                                                 metadata=metadata):
                    if chunk.data:
                        f.write(chunk.data)
                        digest.update(chunk.data)
                    if chunk.HasField("file"):
                        sent = chunk.file.sha256
                f.flush()
                os.fsync(f.fileno())
        except grpc.RpcError as exc:
            raise NodeCopyError(f"volume {self.name!r}: downloading {path!r} from the agent failed: "
                                f"{exc.details() or exc.code()} (what arrived is kept; the next sync resumes)"
                                ) from None
        if digest.hexdigest() != sha256 or sent != sha256:
            partial.unlink(missing_ok=True)
            raise NodeCopyError(f"volume {self.name!r}: {path!r} changed on the agent while it was copied "
                                f"(expected SHA-256 {sha256}, got {digest.hexdigest()}); sync again")
        real = self.real(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, real)

    def upload(self, stub: AgentStub, metadata: list, change: pb.VolumeChange) -> None:
        """One content staged at the agent by SHA-256 (skipped when the agent has it, resumed after a cut)."""
        import grpc

        state = _call(stub, metadata, pb.VolumeRequest(op=pb.VOLUME_STAT, name=self.name, path=change.path,
                                                       sha256=change.sha256), self.name).file
        if state.exists:
            return
        offset = state.offset if state.offset <= change.size else 0
        real = self.real(change.path)

        def chunks() -> Iterator[pb.VolumeChunk]:
            yield pb.VolumeChunk(file=pb.VolumeFile(name=self.name, path=change.path, size=change.size,
                                                    sha256=change.sha256, offset=offset, stage=True))
            with open(real, "rb") as f:
                f.seek(offset)
                while data := f.read(CHUNK_BYTES):
                    yield pb.VolumeChunk(data=data)

        try:
            stub.VolumeUpload(chunks(), metadata=metadata)
        except grpc.RpcError as exc:
            raise NodeCopyError(f"volume {self.name!r}: uploading {change.path!r} to the agent failed: "
                                f"{exc.details() or exc.code()} (the next commit resumes it)") from None


def _changed(base: dict[str, list], now: dict[str, list]) -> set[str]:
    """Paths written or removed here since the last sync or commit."""
    return {p for p, v in now.items() if base.get(p, [""])[0] != v[0]} | {p for p in base if p not in now}


def _call(stub: AgentStub, metadata: list, request: pb.VolumeRequest, name: str) -> pb.VolumeReply:
    import grpc

    try:
        return stub.VolumeCall(request, metadata=metadata)
    except grpc.RpcError as exc:
        raise NodeCopyError(f"volume {name!r}: the agent refused or couldn't be reached: "
                            f"{exc.details() or exc.code()}") from None


def _a_few_at_once(transfers: list[tuple]) -> None:
    """Run the transfers, PARALLEL_TRANSFERS at a time; the first failure is raised (the others finish)."""
    if not transfers:
        return
    with ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
        for future in [pool.submit(*transfer) for transfer in transfers]:
            future.result()


class _agent:
    """A gRPC channel to this job's agent (through its tunnel) and the container token's metadata."""

    def __enter__(self) -> tuple[AgentStub, list]:
        import grpc

        from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

        self.channel = grpc.insecure_channel(f"127.0.0.1:{os.environ['NBMODAL_AGENT_PORT']}")
        return AgentStub(self.channel), [(TOKEN_METADATA_KEY, os.environ["NBMODAL_CONTAINER_TOKEN"])]

    def __exit__(self, *exc: object) -> None:
        self.channel.close()


class _lock:
    """One sync or commit of a volume's node copy at a time: among this process's threads, and among the
    jobs on this node that share the copy (flock)."""

    def __init__(self, name: str) -> None:
        with _locks_lock:
            self.thread_lock = _locks.setdefault(name, threading.Lock())
        self.path = Path(copies()[name]).parent.parent / f".{name}.lock" if name in copies() else None

    def __enter__(self) -> None:
        self.thread_lock.acquire()
        self.fd = -1
        if self.path is not None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.thread_lock.release()


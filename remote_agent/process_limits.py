"""A process limit per container, so a fork bomb ends its own run and nothing else.

Each container gets its own ``pids`` cgroup with ``pids.max`` (``NBMODAL_CONTAINER_PIDS_MAX``,
default 4096; 0 turns the limit off): the kernel refuses the fork past it (``fork()`` fails with
EAGAIN inside the container), and the agent, seeing ``pids.events`` count a refusal, kills the
container's whole cgroup and fails the run with the limit (``ProcessLimitExceeded``). Where the
cgroup lives, chosen once when the agent starts and logged:

- **cgroup v2**: beside the container's memory/CPU cgroup (remote_agent/limits.py), when the
  agent's cgroup has the ``pids`` controller to hand down;
- **cgroup v1**: a ``pids`` hierarchy the agent may write (a hybrid host, or the agent as root);
- **neither**: no process limit, logged at start. RLIMIT_NPROC is not a fallback: it counts every
  process of the agent's user (the agent's own, other containers', the user's shell), and root
  ignores it, so it can't bound one container.

Example::

    limiter = choose_process_limiter()
    cgroup = limiter.for_container("c-1") if limiter else None
    if cgroup is not None and cgroup.limit_hit():
        cgroup.kill_all()
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from nbmodal_wire.pids import pid_alive

log = logging.getLogger(__name__)

DEFAULT_PIDS_MAX = 4096
# A fork bomb outruns one pass of kills; a few passes empty a cgroup whose size is bounded by pids.max.
KILL_PASSES = 50


def pids_max_setting() -> int:
    """The per-container process limit (``NBMODAL_CONTAINER_PIDS_MAX``; 0: none)."""
    try:
        return max(0, int(os.environ.get("NBMODAL_CONTAINER_PIDS_MAX", DEFAULT_PIDS_MAX)))
    except ValueError:
        return DEFAULT_PIDS_MAX


@dataclass(frozen=True)
class ProcessLimitExceeded:
    """A container that reached its process limit: the limit, and how many forks were refused."""

    limit: int
    refused: int

    def message(self) -> str:
        forks = "1 fork" if self.refused == 1 else f"{self.refused} forks"
        return (f"the container reached its limit of {self.limit} processes ({forks} refused: a fork bomb, or a "
                f"pool that starts too many processes) and was killed; NBMODAL_CONTAINER_PIDS_MAX on the agent's "
                f"host sets the limit")


class PidsCgroup:
    """One container's pids cgroup (v1 or v2: the files used are the same)."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._baseline = 0
        self._verdict: ProcessLimitExceeded | None = None  # kept: asked again after the cgroup is gone
        self._closed = False
        self._events_fd: int | None = None  # pids.events, opened on the first read

    def wrap_argv(self, argv: list[str]) -> list[str]:
        """A spawned container joins before it runs anything (as CgroupLimits.wrap_argv)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def join(self, pid: int) -> None:
        """Put a forked container in (it runs no user code until the agent sends it a run)."""
        with contextlib.suppress(ProcessLookupError, OSError):
            (self.path / "cgroup.procs").write_text(str(pid))

    def refused(self) -> int:
        """How many forks the limit has refused so far."""
        # Asked after every run, on the event loop: one pread of a file kept open (a cgroup file is
        # generated anew at offset 0) costs a tenth of opening and reading it each time.
        try:
            if self._events_fd is None:
                self._events_fd = os.open(self.path / "pids.events", os.O_RDONLY | os.O_CLOEXEC)
            text = os.pread(self._events_fd, 4096, 0).decode()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value)
        return 0

    def exceeded(self) -> ProcessLimitExceeded | None:
        """Set once a fork in the container was refused for the limit."""
        if self._closed:
            return self._verdict
        refused = self.refused() - self._baseline
        if refused > 0:
            self._verdict = ProcessLimitExceeded(self.limit, refused)
        return self._verdict

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self) -> None:
        """SIGKILL every process in it, until none is left (or a bounded number of passes)."""
        kill_file = self.path / "cgroup.kill"  # v2, Linux ≥ 5.14: the kernel does it at once
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
                return
        for _ in range(KILL_PASSES):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """The container has exited: remove its cgroup (once its last process is gone)."""
        self.exceeded()
        self._closed = True
        if self._events_fd is not None:
            os.close(self._events_fd)
            self._events_fd = None
        if self.pids():
            self.kill_all()
        with contextlib.suppress(OSError):  # v2: remote_agent/limits.py may have removed it already
            self.path.rmdir()


class ProcessLimiter:
    """Makes containers' pids cgroups under ``parent``."""

    def __init__(self, parent: Path, limit: int, shared_with_memory: bool, method: str) -> None:
        self.parent = parent
        self.limit = limit
        self.shared_with_memory = shared_with_memory
        self.method = method

    def for_container(self, container_id: str) -> PidsCgroup | None:
        path = self.parent / container_id
        try:
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(self.limit))
        except OSError as exc:
            log.warning("no process limit for container %s: %s", container_id, exc)
            return None
        # v2: the directory is also the container's memory cgroup (remote_agent/limits.py).
        cgroup = PidsCgroup(path, self.limit)
        cgroup._baseline = cgroup.refused()
        return cgroup

    def close(self) -> None:
        if not self.shared_with_memory:
            for child in self.parent.iterdir() if self.parent.is_dir() else ():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                self.parent.rmdir()


def choose_process_limiter(v2_parent: Path | None = None,
                           proc_self: Path = Path("/proc/self")) -> ProcessLimiter | None:
    """Where containers' pids cgroups go here (see the module docstring), or None; logged.

    ``v2_parent`` is the cgroup v2 directory containers' memory cgroups go under, when there is one.
    """
    limit = pids_max_setting()
    if limit == 0:
        log.info("container process limit: none (NBMODAL_CONTAINER_PIDS_MAX=0)")
        return None
    if v2_parent is not None and "pids" in _words(v2_parent / "cgroup.subtree_control"):
        limiter = ProcessLimiter(v2_parent, limit, True, f"cgroup v2 pids.max={limit} under {v2_parent}")
        log.info("container process limit: %s", limiter.method)
        return limiter
    v1_root = _v1_pids_mount(proc_self)
    reason = "this host has no pids cgroup the agent may use"
    if v1_root is not None:
        own = v1_root / _v1_own_path(proc_self).lstrip("/")
        _remove_stale(own)
        parent = own / f"nbmodal-containers-{os.getpid()}"
        try:
            parent.mkdir(exist_ok=True)
            probe = parent / "probe"
            probe.mkdir(exist_ok=True)
            try:
                (probe / "pids.max").write_text(str(limit))
            finally:
                probe.rmdir()
            limiter = ProcessLimiter(parent, limit, False, f"cgroup v1 pids.max={limit} under {parent}")
            log.info("container process limit: %s", limiter.method)
            return limiter
        except OSError as exc:
            reason = f"can't make pids cgroups under {v1_root}: {exc}"
            with contextlib.suppress(OSError):
                parent.rmdir()
    log.warning("container process limit: none (%s); a fork bomb in a container can exhaust the host's "
                "processes", reason)
    return None


def _remove_stale(own: Path) -> None:
    """Empty cgroups left by agents that were killed (their pid in the name is gone)."""
    for parent in own.glob("nbmodal-containers-*"):
        pid = parent.name.rpartition("-")[2]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        for child in parent.iterdir():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def _words(path: Path) -> list[str]:
    try:
        return [word.lstrip("+") for word in path.read_text().split()]
    except OSError:
        return []


def _v1_pids_mount(proc_self: Path) -> Path | None:
    """The mount point of a cgroup v1 hierarchy with the pids controller, if there is one."""
    try:
        lines = (proc_self / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        mount_fields, separator, fs_fields = line.partition(" - ")
        fs = fs_fields.split()
        if separator and fs[:1] == ["cgroup"] and len(fs) > 2 and "pids" in fs[2].split(","):
            return Path(mount_fields.split()[4])
    return None


def _v1_own_path(proc_self: Path) -> str:
    """This process's path in the v1 pids hierarchy ("/" at its root)."""
    try:
        for line in (proc_self / "cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                return path
    except (OSError, ValueError):
        pass
    return "/"

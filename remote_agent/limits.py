"""Hard limits of a container: ``memory=(request, limit)`` and ``cpu=(request, limit)``.

The request is reserved by the allocator (remote_agent/allocator.py); the limit
is enforced here, one of two ways, chosen once when the agent starts (and
logged):

- **cgroup v2**, where the host lets the agent make cgroups under its own: each
  container gets one with ``memory.max`` (no swap beyond it, the whole group
  killed together) and, for a CPU limit, ``cpu.max``. The kernel enforces both;
  the container is told apart from an ordinary death by ``memory.events``.
- **a watchdog** elsewhere: the resident memory of the container's whole process
  tree (RSS from /proc, so pages shared with a zygote count too) is sampled a
  few times a second, and a tree above its limit is killed. A CPU limit has no
  effect there beyond the cores the container is pinned to.

Either way the container is ended and its run fails with the limit and the
peak it reached (``MemoryLimitExceeded``); the agent and other containers go on.
A container without limits is left as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nbmodal_wire import pb

log = logging.getLogger(__name__)

MIB = 1024 * 1024
WATCHDOG_INTERVAL_S = 0.2
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class MemoryLimitExceeded:
    """A container ended for going over its memory limit: the limit and the highest use seen (MiB)."""

    limit_mib: int
    peak_mib: int

    def summary(self) -> str:
        return f"went over its memory limit of {self.limit_mib} MiB (peak {self.peak_mib} MiB) and was killed"

    def message(self) -> str:
        """What the run's error says."""
        return f"the container {self.summary()}; ask for more with memory=(request, limit), or use less"


# -- /proc ---------------------------------------------------------------------------------------


class ProcReader:
    """The process table as /proc shows it (tests give the watchdog a fake one)."""

    def __init__(self, root: Path = Path("/proc")) -> None:
        self.root = root
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self._has_children_files: bool | None = None  # /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)

    def tree(self, root: int) -> list[int]:
        """``root`` and every process descended from it; empty once ``root`` has ended."""
        if not (self.root / str(root)).is_dir():
            return []
        if self._has_children_files is None:
            self._has_children_files = (self.root / str(root) / "task" / str(root) / "children").exists()
        if not self._has_children_files:  # the whole table, read to find one tree
            return process_tree(root, self.parents())
        tree: list[int] = []
        frontier = [root]
        while frontier:
            pid = frontier.pop()
            if pid in tree:
                continue
            tree.append(pid)
            frontier.extend(self._children(pid))
        return tree

    def _children(self, pid: int) -> list[int]:
        children: list[int] = []
        try:
            tasks = list(os.scandir(self.root / str(pid) / "task"))
        except OSError:  # ended meanwhile
            return children
        for task in tasks:
            try:
                children.extend(int(child) for child in Path(task.path, "children").read_text().split())
            except (OSError, ValueError):
                continue
        return children

    def parents(self) -> dict[int, int]:
        """pid -> parent pid, for every process now."""
        table: dict[int, int] = {}
        for entry in os.scandir(self.root):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            # "pid (comm) state ppid …": comm may hold spaces and parentheses.
            fields = stat.rpartition(")")[2].split()
            if len(fields) > 1:
                table[int(entry.name)] = int(fields[1])
        return table

    def rss_bytes(self, pid: int) -> int:
        """The resident memory of one process (0 once it has ended)."""
        try:
            return int((self.root / str(pid) / "statm").read_text().split()[1]) * self.page_size
        except (OSError, IndexError, ValueError):
            return 0


def process_tree(root: int, parents: dict[int, int]) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in tree:
            continue
        tree.append(pid)
        frontier.extend(children.get(pid, ()))
    return tree


# -- the limits of one container ------------------------------------------------------------------


class ContainerLimits(ABC):
    """How one container's limits are held to: set up before it starts, asked after it ends."""

    def __init__(self, memory_limit_mib: int) -> None:
        self.memory_limit_mib = memory_limit_mib

    def wrap_argv(self, argv: list[str]) -> list[str]:
        """The command that starts a spawned container, joining its limits before anything else runs."""
        return argv

    @abstractmethod
    def started(self, pid: int, kill: Callable[[], None]) -> None:
        """The container's process is ``pid`` (its tree is the container); ``kill`` ends it."""

    @abstractmethod
    def exceeded(self) -> MemoryLimitExceeded | None:
        """Set once the container went over its memory limit (and was killed for it)."""

    @abstractmethod
    def close(self) -> None:
        """The container has exited: stop holding it."""


class Enforcer(ABC):
    """The agent's way of enforcing limits (``choose_enforcer`` picks one)."""

    method: str = ""  # for the log: how limits are enforced here

    def for_container(self, container_id: str, spec: pb.ContainerSpec) -> ContainerLimits | None:
        """The limits of a container of ``spec``, or None when it has none."""
        if not spec.memory_limit_mib and not spec.cpu_limit:
            return None
        return self._limits(container_id, spec)

    @abstractmethod
    def _limits(self, container_id: str, spec: pb.ContainerSpec) -> ContainerLimits:
        """Limits for a spec that has some."""

    def close(self) -> None:
        """The agent stops: remove what was made for limits."""
        return None  # only the cgroup method leaves something behind


# -- the watchdog ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Watch:
    """One container under the watchdog: its tree's root, its limit, and the highest use seen."""

    root_pid: int
    limit_bytes: int
    kill: Callable[[], None]
    peak_bytes: int = 0
    verdict: MemoryLimitExceeded | None = None
    tree: list[int] = field(default_factory=list)


class MemoryWatchdog:
    """Samples the resident memory of every watched container's process tree; kills a tree over its limit.

    A pass (``sample``) follows each container's tree from its root through /proc's children
    lists, so its cost grows with the containers' own processes, not with the host's.
    """

    def __init__(self, reader: ProcReader | None = None, interval_s: float = WATCHDOG_INTERVAL_S) -> None:
        self.reader = reader or ProcReader()
        self.interval_s = interval_s
        self.watches: set[Watch] = set()
        self._task: asyncio.Task | None = None

    def watch(self, watch: Watch) -> None:
        self.watches.add(watch)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="memory-watchdog")

    def unwatch(self, watch: Watch) -> None:
        self.watches.discard(watch)

    def sample(self) -> None:
        """One pass over the watched containers: note each tree's use, kill those over their limit."""
        for watch in list(self.watches):
            if watch.verdict is not None:
                continue
            watch.tree = self.reader.tree(watch.root_pid)
            used = sum(self.reader.rss_bytes(pid) for pid in watch.tree)
            watch.peak_bytes = max(watch.peak_bytes, used)
            if used > watch.limit_bytes:
                watch.verdict = MemoryLimitExceeded(watch.limit_bytes // MIB, -(-watch.peak_bytes // MIB))
                log.warning("container process %d uses %d MiB, over its limit of %d MiB: killing it",
                            watch.root_pid, used // MIB, watch.limit_bytes // MIB)
                watch.kill()
                _kill_all(watch.tree)  # children that left its process groups too

    async def _run(self) -> None:
        while self.watches:
            try:
                self.sample()
            except Exception:  # one bad pass must not end the watch of every container
                log.exception("memory watchdog pass failed")
            await asyncio.sleep(self.interval_s)


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class WatchedLimits(ContainerLimits):
    def __init__(self, watchdog: MemoryWatchdog, memory_limit_mib: int) -> None:
        super().__init__(memory_limit_mib)
        self.watchdog = watchdog
        self._watch: Watch | None = None

    def started(self, pid: int, kill: Callable[[], None]) -> None:
        if self.memory_limit_mib:
            self._watch = Watch(pid, self.memory_limit_mib * MIB, kill)
            self.watchdog.watch(self._watch)

    def exceeded(self) -> MemoryLimitExceeded | None:
        return self._watch.verdict if self._watch is not None else None

    def close(self) -> None:
        if self._watch is not None:
            self.watchdog.unwatch(self._watch)


class WatchdogEnforcer(Enforcer):
    method = "a watchdog on each container's resident memory (no CPU limit beyond its pinned cores)"

    def __init__(self, watchdog: MemoryWatchdog | None = None) -> None:
        self.watchdog = watchdog or MemoryWatchdog()

    def _limits(self, container_id: str, spec: pb.ContainerSpec) -> ContainerLimits:
        return WatchedLimits(self.watchdog, spec.memory_limit_mib)


# -- cgroup v2 ------------------------------------------------------------------------------------


class CgroupLimits(ContainerLimits):
    """A container's own cgroup: memory.max (and no swap past it), cpu.max, killed as one group."""

    def __init__(self, path: Path, memory_limit_mib: int) -> None:
        super().__init__(memory_limit_mib)
        self.path = path

    def wrap_argv(self, argv: list[str]) -> list[str]:
        # The shell joins the cgroup and becomes the container, so everything it starts is inside.
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def started(self, pid: int, kill: Callable[[], None]) -> None:
        # A forked container joins here (a spawned one already did, through wrap_argv); it runs no
        # user code before the agent sends it a run, so nothing it starts is left outside.
        with contextlib.suppress(ProcessLookupError, OSError):
            (self.path / "cgroup.procs").write_text(str(pid))

    def exceeded(self) -> MemoryLimitExceeded | None:
        if not self.memory_limit_mib or _events(self.path / "memory.events").get("oom_kill", 0) == 0:
            return None
        try:
            peak = int((self.path / "memory.peak").read_text()) // MIB
        except (OSError, ValueError):  # kernels before 5.19 keep no peak: it reached the limit
            peak = self.memory_limit_mib
        return MemoryLimitExceeded(self.memory_limit_mib, max(peak, self.memory_limit_mib))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            remove_cgroup(self.path)


def _events(path: Path) -> dict[str, int]:
    try:
        return {key: int(value) for key, _, value in
                (line.partition(" ") for line in path.read_text().splitlines()) if value.strip().isdigit()}
    except OSError:
        return {}


class CgroupEnforcer(Enforcer):
    """Containers' cgroups under ``parent``, a cgroup of the agent's own with the controllers enabled."""

    def __init__(self, parent: Path, cpu: bool) -> None:
        self.parent = parent
        self.cpu = cpu
        self.method = f"cgroup v2 under {parent} (memory.max{', cpu.max' if cpu else ''})"

    def _limits(self, container_id: str, spec: pb.ContainerSpec) -> ContainerLimits:
        path = self.parent / container_id
        path.mkdir(exist_ok=True)
        if spec.memory_limit_mib:
            (path / "memory.max").write_text(str(spec.memory_limit_mib * MIB))
            _write_if_there(path / "memory.swap.max", "0")  # the limit is of memory, not memory + swap
            _write_if_there(path / "memory.oom.group", "1")  # the whole container goes, not one child
        if spec.cpu_limit and self.cpu:
            (path / "cpu.max").write_text(f"{round(spec.cpu_limit * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        return CgroupLimits(path, spec.memory_limit_mib)

    def close(self) -> None:
        for child in self.parent.iterdir() if self.parent.is_dir() else ():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    remove_cgroup(child)
        with contextlib.suppress(OSError):
            remove_cgroup(self.parent)


def remove_cgroup(path: Path) -> None:
    """Remove an empty cgroup (cgroupfs takes its interface files with the directory)."""
    path.rmdir()


def _write_if_there(path: Path, value: str) -> None:
    if path.exists():
        path.write_text(value)


# -- choosing ---------------------------------------------------------------------------------------


def own_cgroup(proc_self: Path = Path("/proc/self")) -> Path | None:
    """This process's cgroup v2 directory, or None where there is no cgroup v2 hierarchy to use."""
    try:
        lines = (proc_self / "cgroup").read_text().splitlines()
        mounts = (proc_self / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    mount = _cgroup2_mount(mounts)
    if relative is None or mount is None:
        return None
    path = Path(mount) / relative.lstrip("/")
    return path if (path / "cgroup.controllers").exists() else None


def _cgroup2_mount(mountinfo: list[str]) -> str | None:
    # "36 35 0:38 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw": the mount point is the
    # fifth field, the filesystem type the first after " - ".
    for line in mountinfo:
        mount_fields, separator, fs_fields = line.partition(" - ")
        if separator and fs_fields.split()[:1] == ["cgroup2"] and len(mount_fields.split()) > 4:
            return mount_fields.split()[4]
    return None


def delegate_cgroup(own: Path, pid: int) -> tuple[Path | None, bool, str]:
    """A cgroup for containers under ``own``, with memory (and cpu) enabled for its children.

    Returns (the parent of containers' cgroups or None, whether cpu.max works, why not when None).
    A cgroup may enable controllers for its children only while it holds no processes itself, so
    the agent moves into a leaf of its own first, and only when its cgroup holds nothing else.
    """
    try:
        available = (own / "cgroup.controllers").read_text().split()
        if "memory" not in available:
            return None, False, f"the memory controller is not delegated to {own}"
        enabled = _controllers(own / "cgroup.subtree_control")
        if "memory" not in enabled:
            others = [int(p) for p in (own / "cgroup.procs").read_text().split() if int(p) != pid]
            if others:
                return None, False, (f"{own} also holds processes other than the agent ({len(others)}), so it "
                                     f"can't hand controllers to containers")
            leaf = own / f"nbmodal-agent-{pid}"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(pid))
            (own / "cgroup.subtree_control").write_text(
                " ".join(f"+{name}" for name in ("memory", "cpu", "pids") if name in available))
            enabled = _controllers(own / "cgroup.subtree_control")
        parent = own / f"nbmodal-containers-{pid}"
        parent.mkdir(exist_ok=True)
        cpu = "cpu" in enabled
        # pids: containers' process limits go in the same cgroups (remote_agent/process_limits.py).
        (parent / "cgroup.subtree_control").write_text(
            "+memory" + (" +cpu" if cpu else "") + (" +pids" if "pids" in enabled else ""))
        probe = parent / "probe"
        probe.mkdir(exist_ok=True)
        try:
            (probe / "memory.max").write_text(str(64 * MIB))
        finally:
            remove_cgroup(probe)
        return parent, cpu, ""
    except (OSError, ValueError) as exc:
        return None, False, f"can't make cgroups under {own}: {exc}"


def _controllers(path: Path) -> list[str]:
    # The kernel lists "memory cpu"; what was written reads "+memory +cpu" where no kernel is behind it.
    return [name.lstrip("+") for name in path.read_text().split()]


def choose_enforcer(use_cgroups: bool = True) -> Enforcer:
    """cgroup v2 where this host lets the agent make cgroups under its own, else the watchdog; logged."""
    reason = "turned off (NBMODAL_CGROUPS=0)"
    if use_cgroups:
        own = own_cgroup()
        reason = "this host has no cgroup v2 hierarchy the agent is in"
        if own is not None:
            parent, cpu, reason = delegate_cgroup(own, os.getpid())
            if parent is not None:
                enforcer: Enforcer = CgroupEnforcer(parent, cpu)
                log.info("container limits: %s", enforcer.method)
                return enforcer
    enforcer = WatchdogEnforcer()
    log.info("container limits: %s; cgroups not used: %s", enforcer.method, reason)
    return enforcer

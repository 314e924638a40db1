"""The local launcher: containers as processes on the agent's own host.

A container is ``python -m remote_agent.worker`` on one end of a private
socket pair: forked from its image's zygote (a pre-started interpreter with the
image's heavy imports done) when there is one, else spawned; inside the
agent-wide bubblewrap sandbox when bubblewrap works here. The agent reserves
its GPUs, cores and memory (remote_agent/allocator.py); a container's hard limits
(``memory=(request, limit)``, ``cpu=(request, limit)``) are held to by a cgroup or
a watchdog (remote_agent/limits.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

from nbmodal_wire import pb
from remote_agent import sandbox
from remote_agent.exit_status import describe_exit
from remote_agent.images import ImageStore
from remote_agent.launch import MPL_BACKEND, LaunchPlan, SandboxConfig, plan_container
from remote_agent.launchers import ContainerProcess, Launcher, LaunchRequest, Notify, Streams, standby
from remote_agent.limits import ContainerLimits, Enforcer, MemoryLimitExceeded, choose_enforcer
from remote_agent.process_limits import PidsCgroup, ProcessLimitExceeded, choose_process_limiter
from remote_agent.zygote import Zygote

log = logging.getLogger(__name__)

PIDS_WATCH_S = 0.25  # how often containers' process limits are checked


class LocalProcess(ContainerProcess):
    """A worker process on this host (a zygote's child, or the agent's), and its socket."""

    def __init__(self, process, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 limits: ContainerLimits | None = None, pids: PidsCgroup | None = None,
                 joining: asyncio.Future | None = None) -> None:
        self._process = process  # asyncio.subprocess.Process or zygote.ForkedProcess
        self._streams = (reader, writer)
        self._limits = limits
        self._pids = pids  # its process limit (remote_agent/process_limits.py)
        self._joining = joining  # a forked container's move into its pids cgroup, under way

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def connect(self, notify: Notify | None) -> Streams:
        if self._joining is not None:
            # A forked container is in its pids cgroup before the agent hears it is ready (and so before
            # any run): the move, which may wait for an RCU grace period, overlaps the child's own set-up.
            await self._joining
            self._joining = None
        return self._streams

    async def wait(self) -> int | None:
        return await self._process.wait()

    def interrupt(self) -> None:
        # The worker's own group: bubblewrap around it would not pass SIGINT on.
        _signal_group(self.worker_pid or self.pid, signal.SIGINT)

    def kill(self) -> None:
        _signal_group(self.worker_pid or self.pid, signal.SIGKILL)
        if self.worker_pid and self.worker_pid != self.pid:  # the sandbox around it
            _signal_group(self.pid, signal.SIGKILL)
        if self._pids is not None:  # and what left its process groups (a fork bomb's children do)
            self._pids.kill_all()

    def process_limit_exceeded(self) -> ProcessLimitExceeded | None:
        return self._pids.exceeded() if self._pids is not None else None

    def memory_limit_exceeded(self) -> MemoryLimitExceeded | None:
        return self._limits.exceeded() if self._limits is not None else None

    def exit_description(self, container_id: str) -> str:
        exceeded = self.memory_limit_exceeded()
        if exceeded is not None:
            return f"container {container_id} (pid {self.pid}) {exceeded.summary()}"
        forks = self.process_limit_exceeded()
        if forks is not None:
            return f"container {container_id} (pid {self.pid}): {forks.message()}"
        code = self.returncode
        if code is None:
            return f"container {container_id} lost its connection to the agent"
        # Under bubblewrap the worker is bwrap's child: bwrap exits with 128 + the signal that ended it.
        sandboxed = bool(self.worker_pid) and self.worker_pid != self.pid
        return f"container {container_id} (pid {self.pid}) {describe_exit(code, sandboxed)}"


def _worker_argv(request: LaunchRequest, layout: dict, fd: int) -> list[str]:
    """The worker's command, inside the sandbox, serving socket ``fd`` (``request.env`` gets its settings)."""
    plan, env = request.plan, request.env
    argv = [plan.python, "-u", "-m", "remote_agent.worker", "--fd", str(fd)]
    if request.session:
        argv.append("--session")
    env["NBMODAL_LAYOUT"] = json.dumps(layout)
    if plan.outer_argv:
        env["NBMODAL_OWN_PROCESS_GROUP"] = "1"  # so an interrupt reaches it, not bwrap
    return argv


def _spawn_command(request: LaunchRequest, layout: dict, fd: int) -> list[str]:
    """The whole command of a spawned container: the sandbox around the worker."""
    return [*request.plan.outer_argv, *_worker_argv(request, layout, fd)]


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


class LocalLauncher(Launcher):
    """Processes on this host, sandboxed when bubblewrap works, forked from zygotes when they may be."""

    def __init__(self, images: ImageStore, volume_dir, sandbox_config: SandboxConfig, scratch_dir: Path,
                 logs_dir: Path, use_zygotes: bool = True, enforcer: Enforcer | None = None) -> None:
        self.images = images
        self.volume_dir = volume_dir  # -> the host dir of a volume (raises for unknown ones)
        self.sandbox = sandbox_config
        self.scratch_dir = scratch_dir
        self.logs_dir = logs_dir
        self.use_zygotes = use_zygotes
        self._zygotes: dict[tuple, Zygote] = {}
        self._zygote_locks: dict[tuple, asyncio.Lock] = {}
        # How memory and CPU limits are held to here (a cgroup per container, or the watchdog).
        self.enforcer = enforcer or choose_enforcer(use_cgroups=os.environ.get("NBMODAL_CGROUPS", "1") != "0")
        self._limits: dict[str, ContainerLimits] = {}
        # A process limit per container (a fork bomb ends its own run), and a watch on each one.
        self.process_limiter = choose_process_limiter(getattr(self.enforcer, "parent", None))
        self._pids: dict[str, tuple[PidsCgroup, LocalProcess]] = {}
        self._pids_watch: asyncio.Task | None = None
        # A launcher already in a pids cgroup of its own, so a spawned container's start doesn't wait for the join.
        # (It waits in the sandbox of a container with no image, as most are: bubblewrap's set-up is done too.)
        self.standby = standby.Standby(self.process_limiter, lambda: self.sandbox.outer_argv(host_tmp=True),
                                       sys.executable, logs_dir) \
            if self.process_limiter is not None and standby.enabled() else None

    async def plan(self, spec: pb.ContainerSpec, container_id: str) -> LaunchPlan:
        plan = plan_container(spec, container_id, self.images, self.volume_dir, self.sandbox, self.scratch_dir)
        if not plan.sandboxed and plan.binds:
            sandbox.link_without_sandbox([(Path(host), path) for host, path, _ in plan.binds])
        if plan.image_id and self.use_zygotes:
            plan.zygote = await self._zygote_for(plan)
        return plan

    async def launch(self, request: LaunchRequest) -> ContainerProcess:
        plan, env = request.plan, request.env
        layout = plan.layout(request.allocation)
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        limits = self.enforcer.for_container(request.container_id, request.spec)
        if limits is not None:
            self._limits[request.container_id] = limits
        elif plan.zygote is None and self.standby is not None:
            # (A container with memory or CPU limits joins their cgroup too: it takes the ordinary path.)
            started = await self._launch_from_standby(request, layout)
            if started is not None:
                return started
        parent, child = socket.socketpair()
        pids = self.process_limiter.for_container(request.container_id) if self.process_limiter else None
        try:
            with open(request.log_path, "ab") as log_file:
                if plan.zygote is not None:
                    # Forked from the image's pre-started interpreter: its heavy imports are done.
                    process = await plan.zygote.spawn(child.fileno(), log_file.fileno(), env, plan.cwd, layout,
                                                      request.session)
                else:
                    command = _spawn_command(request, layout, child.fileno())
                    if limits is not None:
                        command = limits.wrap_argv(command)
                    if pids is not None:
                        command = pids.wrap_argv(command)
                    process = await asyncio.create_subprocess_exec(
                        *command, pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                        stdout=log_file, stderr=log_file, env=env, start_new_session=True)
        except BaseException:
            parent.close()
            if pids is not None:
                pids.close()
            raise
        finally:
            child.close()
        joining = None
        if pids is not None and plan.zygote is not None:
            # A forked container joins from here (a spawned one joined through wrap_argv): in a thread, since
            # the move may wait for an RCU grace period; its connect() waits for it.
            joining = asyncio.ensure_future(asyncio.to_thread(pids.join, process.pid))
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        local = LocalProcess(process, reader, writer, limits, pids, joining)
        if limits is not None:
            limits.started(local.pid, local.kill)
        if pids is not None:
            self._watch_pids(request.container_id, pids, local)
        return local

    async def _launch_from_standby(self, request: LaunchRequest, layout: dict) -> LocalProcess | None:
        """Start a spawned container from the standby launcher (remote_agent/launchers/standby.py), or None
        when none is waiting (the caller takes the ordinary path)."""
        assert self.standby is not None
        ready = self.standby.take(request.plan.outer_argv, request.plan.python)
        if ready is None:
            return None
        try:
            await ready.start(_worker_argv(request, layout, ready.container_fd), request.env, request.log_path)
        except (OSError, ValueError) as exc:  # it died meanwhile; a NUL in the environment: the ordinary path says so
            log.warning("container %s: the standby launcher failed (%s); starting it the ordinary way",
                        request.container_id, exc)
            await ready.discard()
            return None
        reader, writer = await asyncio.open_unix_connection(sock=ready.socket)
        local = LocalProcess(ready.process, reader, writer, None, ready.cgroup)
        self._watch_pids(request.container_id, ready.cgroup, local)
        return local

    def _watch_pids(self, container_id: str, pids: PidsCgroup, local: LocalProcess) -> None:
        self._pids[container_id] = (pids, local)
        if self._pids_watch is None or self._pids_watch.done():
            self._pids_watch = asyncio.create_task(self._watch_process_limits(), name="process-limits")

    async def _watch_process_limits(self) -> None:
        """Kill a container as soon as its process limit refuses a fork: a fork bomb may never end by itself."""
        while self._pids:
            for container_id, (pids, local) in list(self._pids.items()):
                if local.returncode is None and pids.exceeded() is not None:
                    log.warning("container %s reached its limit of %d processes: killing it", container_id,
                                pids.limit)
                    local.kill()
            await asyncio.sleep(PIDS_WATCH_S)

    def forget(self, container_id: str) -> None:
        shutil.rmtree(self.scratch_dir / container_id, ignore_errors=True)
        limits = self._limits.pop(container_id, None)
        if limits is not None:
            limits.close()
        pids = self._pids.pop(container_id, None)
        if pids is not None:
            pids[0].close()

    async def close(self) -> None:
        if self.standby is not None:
            await self.standby.close()
        for zygote in self._zygotes.values():
            await zygote.stop()
        if self._pids_watch is not None:
            self._pids_watch.cancel()
        for pids, _ in self._pids.values():
            pids.close()
        if self.process_limiter is not None:
            self.process_limiter.close()
        self.enforcer.close()

    async def _zygote_for(self, plan: LaunchPlan) -> Zygote:
        """The image's pre-started interpreter (started now, the first time)."""
        key = plan.zygote_key
        async with self._zygote_locks.setdefault(key, asyncio.Lock()):
            zygote = self._zygotes.get(key)
            if zygote is None or not zygote.alive:
                # Each child gets its container's whole environment (image imports included) at the fork.
                env = dict(os.environ, **plan.env, PYTHONUNBUFFERED="1", MPLBACKEND=MPL_BACKEND)
                log_path = self.logs_dir / f"zygote-{plan.image_id or 'default'}.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                zygote = await Zygote.start(plan.outer_argv, plan.python, plan.preload, env, log_path)
                self._zygotes[key] = zygote
                log.info("zygote for image %s started (pid %d, preloaded: %s)", plan.image_id or "default",
                         zygote.pid, ", ".join(plan.preload) or "nothing")
            return zygote

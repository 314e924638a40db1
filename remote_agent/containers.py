"""Containers: the worker processes that run cells and functions.

A container is a Python process started from ``remote_agent.worker`` with one
end of a private socket pair. Idle containers stay warm for a scale-down
window and serve the next run with an equal spec; a session gets a container
of its own that keeps its namespace until the session is stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nbmodal_wire.frames import read_frame, write_frame
from remote_agent.allocator import Allocation, Allocator, Request
from remote_agent import sandbox
from remote_agent.images import ImageStore
from remote_agent.launch import LaunchPlan, SandboxConfig, plan_container, slurm_plan
from remote_agent.slurm import ContainerListener, SlurmJob
from remote_agent.zygote import Zygote
from nbmodal_wire import pb

log = logging.getLogger(__name__)

CONTAINER_START_TIMEOUT_S = 120.0
_MPL_BACKEND = "module://remote_agent.worker.mpl_backend"


class ContainerDied(Exception):
    def __init__(self, container: Container) -> None:
        self.returncode = container.returncode
        super().__init__(container.exit_description())


def spec_key(spec: pb.ContainerSpec) -> bytes:
    return spec.SerializeToString(deterministic=True)


class Container:
    def __init__(self, container_id: str, spec: pb.ContainerSpec, logs_dir: Path, blob_dir: Path,
                 session: str = "", plan: LaunchPlan | None = None) -> None:
        self.id = container_id
        self.blob_dir = blob_dir
        self.plan = plan or LaunchPlan(python=sys.executable)
        self.slurm: ContainerListener | None = None  # set for an agent whose containers are Slurm jobs
        self._slurm_calls: set[asyncio.Task] = set()
        self.worker_pid = 0
        self.spec = spec
        self.session = session
        self.log_path = logs_dir / f"{container_id}.log"
        self.created = time.time()
        self.idle_since = self.created
        self.process: asyncio.subprocess.Process | None = None
        self.python = ""
        self.run = None  # the Run in progress
        self.killed_by_agent = False
        self._writer: asyncio.StreamWriter | None = None
        self._finished: asyncio.Future | None = None
        self._fetched: asyncio.Future | None = None
        self._exited = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        self.allocation = Allocation()  # GPUs, cores and memory reserved for it
        self.agent_port = 0
        # The container's own credential: storage calls only, revoked when it exits.
        self.token = secrets.token_urlsafe(24)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def alive(self) -> bool:
        return self.process is not None and not self._exited.is_set()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    def exit_description(self) -> str:
        if isinstance(self.process, SlurmJob):
            return f"container {self.id}: {self.process.description()}"
        code = self.returncode
        if code is None:
            return f"container {self.id} lost its connection to the agent"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return f"container {self.id} (pid {self.pid}) was killed by {name}"
        return f"container {self.id} (pid {self.pid}) exited with code {code}"

    async def start(self, notify: Callable[[str], None] | None = None) -> None:
        env = dict(os.environ)
        env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", MPLBACKEND=_MPL_BACKEND,
                   NBMODAL_CONTAINER_ID=self.id, NBMODAL_BLOB_DIR=str(self.blob_dir),
                   NBMODAL_AGENT_PORT=str(self.agent_port), NBMODAL_CONTAINER_TOKEN=self.token)
        if self.spec.gpu:
            # Only its own cards are visible to CUDA (UUIDs: unambiguous whatever the device order).
            gpus = self.allocation.gpus
            env.update(CUDA_VISIBLE_DEVICES=",".join(gpu.uuid for gpu in gpus), CUDA_DEVICE_ORDER="PCI_BUS_ID",
                       NBMODAL_GPUS=",".join(str(gpu.index) for gpu in gpus))
        if self.allocation.cores:
            env["NBMODAL_CPUS"] = ",".join(map(str, self.allocation.cores))  # the worker pins itself to them
        plan = self.plan
        env.update(plan.env)
        env.update(self.spec.env)
        if plan.imports:
            env["NBMODAL_IMAGE_IMPORTS"] = plan.imports
        if self.slurm is not None:
            reader = await self._start_as_slurm_job(env, notify)
        else:
            reader = await self._start_here(env)
        try:
            ready = await asyncio.wait_for(read_frame(reader, pb.FromContainer), CONTAINER_START_TIMEOUT_S)
        except asyncio.TimeoutError:
            ready = None
        if ready is None or not ready.HasField("ready"):
            self.kill()
            await self.process.wait()
            raise RuntimeError(f"{self.exit_description()} before it was ready; see {self.log_path}")
        self.python = ready.ready.python
        self.worker_pid = ready.ready.pid
        self._pump_task = asyncio.create_task(self._pump(reader), name=f"pump-{self.id}")
        log.info("container %s started (pid %d)%s", self.id, self.pid,
                 f" for session {self.session}" if self.session else "")

    async def _start_here(self, env: dict[str, str]) -> asyncio.StreamReader:
        """A worker process on this host (forked from the image's zygote, or spawned), on a socket pair."""
        plan = self.plan
        parent, child = socket.socketpair()
        layout = plan.layout(self.allocation)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            if plan.zygote is not None:
                # Forked from the image's pre-started interpreter: its heavy imports are done.
                self.process = await plan.zygote.spawn(child.fileno(), log_file.fileno(), env, plan.cwd, layout,
                                                       bool(self.session))
            else:
                argv = [plan.python, "-u", "-m", "remote_agent.worker", "--fd", str(child.fileno())]
                if self.session:
                    argv.append("--session")
                env["NBMODAL_LAYOUT"] = json.dumps(layout)
                if plan.outer_argv:
                    env["NBMODAL_OWN_PROCESS_GROUP"] = "1"  # so an interrupt reaches it, not bwrap
                self.process = await asyncio.create_subprocess_exec(
                    *plan.outer_argv, *argv, pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file, stderr=log_file, env=env, start_new_session=True)
        child.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        return reader

    async def _start_as_slurm_job(self, env: dict[str, str], notify) -> asyncio.StreamReader:
        """A batch job that dials back; while it waits, the run hears Slurm's state and reason."""
        listener = self.slurm
        connected = listener.expect(self.token)
        args = ["--connect", listener.address] + (["--session"] if self.session else [])
        try:
            self.process = await SlurmJob.submit(self.spec, listener.config, env, self.plan.python, args,
                                                 f"nbmodal-{self.id}")
            await self.process.wait_until_connected(connected, notify)
        except BaseException:
            listener.forget(self.token)
            if isinstance(self.process, SlurmJob) and self.process.returncode is None:
                await self.process.cancel()
            raise
        reader, self._writer = connected.result()
        return reader

    async def execute(self, run, request: pb.RunRequest, payload_path: str = "") -> pb.RunFinished:
        """Send one run to the container and wait for its result.

        Raises ContainerDied if the process ends first (killed after a cancel
        grace period or timeout, or crashed).
        """
        self.run = run
        self._finished = asyncio.get_running_loop().create_future()
        write_frame(self._writer, pb.ToContainer(execute=pb.Execute(
            run_id=run.id, kind=request.kind, payload=request.payload, code=request.code,
            filename=request.filename, first_line=request.first_line, timeout_s=request.timeout_s,
            keep_namespace=bool(self.session), max_result_bytes=request.max_result_bytes,
            client_python=request.client_python, cwd=request.cwd, payload_path=payload_path,
            generator=request.generator)))
        request.ClearField("payload")  # the container has it; don't hold it for the run's lifetime
        await self._writer.drain()
        try:
            if request.timeout_s > 0:
                # The container stops the run itself at the timeout; this is the backstop.
                backstop = request.timeout_s + max(request.cancel_grace_s, 1.0)
                try:
                    return await asyncio.wait_for(asyncio.shield(self._finished), backstop)
                except asyncio.TimeoutError:
                    log.warning("run %s ignored its timeout; killing container %s", run.id, self.id)
                    self.kill()
                    return await self._finished
            return await self._finished
        finally:
            self.run = None
            self._finished = None
            self.idle_since = time.time()

    async def fetch_value(self, name: str) -> pb.FetchValueReply:
        self._fetched = asyncio.get_running_loop().create_future()
        write_frame(self._writer, pb.ToContainer(fetch_value=pb.FetchValue(name=name)))
        await self._writer.drain()
        try:
            return await self._fetched
        finally:
            self._fetched = None

    def interrupt(self) -> None:
        """KeyboardInterrupt in the running code (and SIGINT to its children)."""
        self._signal_group(signal.SIGINT, self.worker_pid or self.pid)

    def retire(self, grace_s: float = 5.0) -> None:
        """Stop an idle container gently: it sees its socket close, runs exit hooks, exits (else killed)."""
        if self._writer is not None:
            self._writer.close()
        asyncio.get_running_loop().call_later(grace_s, self.kill)

    def kill(self) -> None:
        self.killed_by_agent = True
        self._signal_group(signal.SIGKILL, self.worker_pid or self.pid)
        if self.worker_pid and self.worker_pid != self.pid:  # the sandbox around it
            self._signal_group(signal.SIGKILL)

    async def wait_exited(self) -> None:
        if self._pump_task is None:  # never got as far as ready: nothing reads its socket
            if self.process is not None and self.process.returncode is None:
                self._signal_group(signal.SIGKILL)
                await self.process.wait()
            self._exited.set()
        await self._exited.wait()

    def _signal_group(self, signum: int, group: int = 0) -> None:
        if not self.alive:
            return
        if isinstance(self.process, SlurmJob):  # its process is on another node: Slurm signals it
            self._slurm_calls.add(task := asyncio.get_running_loop().create_task(
                self.process.cancel(None if signum == signal.SIGKILL else signum)))
            task.add_done_callback(self._slurm_calls.discard)
            return
        try:
            os.killpg(group or self.pid, signum)
        except ProcessLookupError:
            pass

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        """Route the container's messages to the run in progress."""
        while True:
            message = await read_frame(reader, pb.FromContainer)
            if message is None:
                break
            kind = message.WhichOneof("kind")
            if kind == "output" and self.run is not None:
                self.run.emit(output=message.output)
            elif kind == "display" and self.run is not None:
                self.run.emit(display=message.display)
            elif kind == "item" and self.run is not None:
                self.run.emit(item=message.item)
            elif kind == "input_started" and self.run is not None:
                self.run.emit(input_started=message.input_started)
            elif kind == "finished" and self._finished is not None and not self._finished.done():
                self._finished.set_result(message.finished)
            elif kind == "fetched" and self._fetched is not None and not self._fetched.done():
                self._fetched.set_result(message.fetched)
        # The socket closed: the process is gone or going.
        self._signal_group(signal.SIGKILL)
        await self.process.wait()
        self._exited.set()
        log.info("%s", self.exit_description())
        for future in (self._finished, self._fetched):
            if future is not None and not future.done():
                future.set_exception(ContainerDied(self))
        if self._writer is not None:
            self._writer.close()


_waiter_ids = itertools.count(1)


def _reserves(spec: pb.ContainerSpec) -> bool:
    return bool(spec.gpu or spec.cpu or spec.memory_mib)


@dataclass
class _Waiter:
    spec: pb.ContainerSpec
    request: Request
    session: str
    granted: asyncio.Future  # a warm Container, or the Allocation to start one with
    notify: Callable[[str], None] | None
    holder: str = field(default_factory=lambda: f"waiter-{next(_waiter_ids)}")
    _told: int = -1

    def tell_position(self, ahead: int) -> None:
        if self.notify is not None and ahead != self._told:
            self._told = ahead
            queue = f"{ahead} ahead" if ahead else "next in line"
            self.notify(f"waiting for {self.request.text} ({queue})")


@dataclass
class _SessionSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    container: Container | None = None
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    names: list[str] = field(default_factory=list)


class ContainerPool:
    """Starts, reuses, scales down and stops containers."""

    def __init__(self, logs_dir: Path, blob_dir: Path, scaledown_window_s: float, allocator: Allocator,
                 volume_dir=None, images: ImageStore | None = None, sandbox_config: SandboxConfig | None = None,
                 scratch_dir: Path | None = None) -> None:
        self.logs_dir = logs_dir
        self.blob_dir = blob_dir
        self.volume_dir = volume_dir  # -> the host dir of a volume (raises for unknown ones)
        self.images = images
        self.sandbox = sandbox_config or SandboxConfig(available=False, hidden=[], shown=[])
        self.scratch_dir = scratch_dir or logs_dir / "scratch"
        self.slurm: ContainerListener | None = None  # containers are Slurm jobs that dial back here
        self._zygotes: dict[tuple, Zygote] = {}
        self._zygote_locks: dict[tuple, asyncio.Lock] = {}
        self.allocator = allocator
        self._gpu_waiters: list[_Waiter] = []
        self.agent_port = 0
        self.container_tokens: set[str] = set()  # read by the service's TokenInterceptor
        self.scaledown_window_s = scaledown_window_s
        self._idle: dict[bytes, list[Container]] = {}
        self._starting: dict[bytes, list[asyncio.Task]] = {}
        self._containers: dict[str, Container] = {}
        self._sessions: dict[str, _SessionSlot] = {}
        self._counter = 0
        self._standing: dict[bytes, pb.ContainerSpec] = {}  # specs with min/buffer containers
        self._watchers: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None

    def start_reaper(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle_forever())

    # -- placement ---------------------------------------------------------

    async def acquire(self, spec: pb.ContainerSpec, session: str = "",
                      notify: Callable[[str], None] | None = None) -> tuple[Container, bool]:
        """A container for one run; the bool says whether it was started for it.

        A run that asks for GPUs, cores or memory waits in a fair queue until a
        warm container of its spec or enough free resources are there; ``notify``
        hears why it waits.
        """
        if session:
            return await self._acquire_session(spec, session, notify)
        if self._reserves(spec):
            return await self._acquire_reserved(spec, notify)
        key = spec_key(spec)
        idle = self._idle.get(key, [])
        while idle:
            container = idle.pop()
            if container.alive:
                return container, False
        starting = self._starting.get(key)
        if starting:  # a warm-up already under way: take it
            return await self._container_of(starting.pop(0)), True
        return await self._start_for_run(spec, notify=notify), True

    def release(self, container: Container) -> None:
        if container.session:
            slot = self._sessions.get(container.session)
            if slot is not None and slot.lock.locked():
                slot.last_used = time.time()
                slot.lock.release()
            return
        if not container.alive:
            self._forget(container)
            return
        container.idle_since = time.time()
        self._idle.setdefault(spec_key(container.spec), []).append(container)
        self._serve_gpu_waiters()

    async def _acquire_reserved(self, spec: pb.ContainerSpec, notify, session: str = "") -> tuple[Container, bool]:
        request = Request.of(spec)
        self.allocator.check_satisfiable(request)
        waiter = _Waiter(spec, request, session, asyncio.get_running_loop().create_future(), notify)
        self._gpu_waiters.append(waiter)
        self._serve_gpu_waiters()
        try:
            granted = await waiter.granted
        except BaseException:  # cancelled while waiting: give back whatever came meanwhile
            if waiter in self._gpu_waiters:
                self._gpu_waiters.remove(waiter)
            if waiter.granted.done() and not waiter.granted.cancelled():
                if isinstance(waiter.granted.result(), Container):
                    self.release(waiter.granted.result())
                else:
                    self.allocator.release(waiter.holder)
            self._serve_gpu_waiters()
            raise
        if isinstance(granted, Container):
            return granted, False
        try:
            return await self._start_for_run(spec, session, allocation=granted), True
        except BaseException:
            self.allocator.release(waiter.holder)
            self._serve_gpu_waiters()
            raise

    def _serve_gpu_waiters(self) -> None:
        """Grant waiting requests in arrival order: a warm container of the spec, or free resources."""
        for waiter in list(self._gpu_waiters):
            if waiter.granted.done():
                continue
            idle = [c for c in self._idle.get(spec_key(waiter.spec), []) if c.alive] if not waiter.session else []
            if idle:
                container = idle[-1]
                self._idle[spec_key(waiter.spec)].remove(container)
                self._gpu_waiters.remove(waiter)
                waiter.granted.set_result(container)
                continue
            allocation = self.allocator.try_allocate(waiter.request, waiter.holder)
            if allocation is not None:
                self._gpu_waiters.remove(waiter)
                waiter.granted.set_result(allocation)
        self._evict_idle_gpu_holders()
        for ahead, waiter in enumerate(self._gpu_waiters):
            waiter.tell_position(ahead)

    def _evict_idle_gpu_holders(self) -> None:
        """Warm containers are a cache: one holding what the head of the queue needs gives it up."""
        if not self._gpu_waiters:
            return
        head = self._gpu_waiters[0]
        for containers in self._idle.values():
            for container in list(containers):
                if self.allocator.could_use(head.request, container.id):
                    log.info("evicting idle container %s: a run waits for %s", container.id, head.request.text)
                    containers.remove(container)
                    container.kill()  # its cards are released when it has exited
                    return

    def prewarm(self, spec: pb.ContainerSpec) -> None:
        """Start a container in the background for the next run with this spec."""
        key = spec_key(spec)
        task = asyncio.create_task(self._start(spec))
        self._starting.setdefault(key, []).append(task)

        def settle(t: asyncio.Task) -> None:
            if task in self._starting.get(key, []):
                self._starting[key].remove(task)
                if not t.cancelled() and t.exception() is None:
                    self.release(t.result())
            if not t.cancelled() and t.exception() is not None:
                log.warning("prewarming a container failed: %s", t.exception())

        task.add_done_callback(settle)

    def replace(self, container: Container) -> None:
        """After killing a container, have a fresh one ready in its place."""
        self._forget(container)
        if not container.session:
            self.prewarm(container.spec)

    async def _acquire_session(self, spec: pb.ContainerSpec, session: str, notify) -> tuple[Container, bool]:
        slot = self._sessions.setdefault(session, _SessionSlot())
        await slot.lock.acquire()
        try:
            container = slot.container
            if container is not None and container.alive and spec_key(container.spec) == spec_key(spec):
                return container, False
            if container is not None:
                container.kill()
                await container.wait_exited()  # its cards, if any, are free again
            if self._reserves(spec):
                slot.container, _ = await self._acquire_reserved(spec, notify, session)
            else:
                slot.container = await self._start_for_run(spec, session, notify=notify)
            return slot.container, True
        except BaseException:
            slot.lock.release()
            raise

    async def _start_for_run(self, spec: pb.ContainerSpec, session: str = "", allocation: Allocation | None = None,
                             notify: Callable[[str], None] | None = None) -> Container:
        return await self._container_of(asyncio.create_task(self._start(spec, session, allocation, notify)))

    async def _container_of(self, start: asyncio.Task) -> Container:
        """Wait for a container start on behalf of a run.

        A run cancelled meanwhile doesn't cancel the start (a half-started
        container would leak its process and its reservation): the start
        finishes and the container joins the warm pool, or stops if it was a
        session's.
        """
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            if self.slurm is not None:
                start.cancel()  # a job still waiting in Slurm's queue is scancel'ed, not kept
            else:
                start.add_done_callback(self._adopt_started)
            raise

    def _adopt_started(self, start: asyncio.Task) -> None:
        if start.cancelled() or start.exception() is not None:
            return
        container = start.result()
        if container.session:
            container.kill()
        else:
            self.release(container)

    async def _start(self, spec: pb.ContainerSpec, session: str = "",
                     allocation: Allocation | None = None, notify: Callable[[str], None] | None = None) -> Container:
        self._counter += 1
        container_id = f"c-{os.getpid()}-{self._counter}"
        if self.slurm is not None:
            plan = slurm_plan(spec, container_id, self.images)
        else:
            plan = plan_container(spec, container_id, self.images, self.volume_dir, self.sandbox, self.scratch_dir)
            if not plan.sandboxed and plan.binds:
                sandbox.link_without_sandbox([(Path(host), path) for host, path, _ in plan.binds])
            if plan.image_id and os.environ.get("NBMODAL_ZYGOTE", "1") != "0":
                plan.zygote = await self._zygote_for(plan)
        container = Container(container_id, spec, self.logs_dir, self.blob_dir, session, plan)
        container.slurm = self.slurm
        container.agent_port = self.agent_port
        self.container_tokens.add(container.token)
        if allocation is not None:
            container.allocation = allocation
            self.allocator.transfer(allocation, container.id)  # the waiter's hold becomes the container's
        self._containers[container.id] = container
        try:
            await container.start(notify)
        except BaseException:
            self._forget(container)
            raise
        watcher = asyncio.create_task(self._forget_when_exited(container))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return container

    async def _zygote_for(self, plan: LaunchPlan) -> Zygote:
        """The image's pre-started interpreter (started now, the first time)."""
        key = plan.zygote_key
        async with self._zygote_locks.setdefault(key, asyncio.Lock()):
            zygote = self._zygotes.get(key)
            if zygote is None or not zygote.alive:
                # Each child gets its container's whole environment (image imports included) at the fork.
                env = dict(os.environ, **plan.env, PYTHONUNBUFFERED="1", MPLBACKEND=_MPL_BACKEND)
                log_path = self.logs_dir / f"zygote-{plan.image_id or 'default'}.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                zygote = await Zygote.start(plan.outer_argv, plan.python, plan.preload, env, log_path)
                self._zygotes[key] = zygote
                log.info("zygote for image %s started (pid %d, preloaded: %s)", plan.image_id or "default",
                         zygote.pid, ", ".join(plan.preload) or "nothing")
            return zygote

    async def _forget_when_exited(self, container: Container) -> None:
        await container.wait_exited()
        self._forget(container)

    def _forget(self, container: Container) -> None:
        self._containers.pop(container.id, None)
        if not container.alive:
            self.container_tokens.discard(container.token)
        idle = self._idle.get(spec_key(container.spec))
        if idle and container in idle:
            idle.remove(container)
        if not container.alive:
            shutil.rmtree(self.scratch_dir / container.id, ignore_errors=True)
        if not container.alive and self.allocator.release(container.id):
            self._serve_gpu_waiters()

    # -- sessions ----------------------------------------------------------

    def sessions(self) -> dict[str, _SessionSlot]:
        return self._sessions

    async def stop_session(self, name: str) -> bool:
        slot = self._sessions.pop(name, None)
        if slot is None:
            return False
        if slot.container is not None:
            slot.container.kill()
            await slot.container.wait_exited()
        return True

    # -- lifecycle ---------------------------------------------------------

    def containers(self) -> list[Container]:
        return list(self._containers.values())

    def _reserves(self, spec: pb.ContainerSpec) -> bool:
        """Whether this agent reserves GPUs, cores or memory for the spec (on Slurm, Slurm does)."""
        return self.slurm is None and _reserves(spec)

    def retire(self, container: Container) -> None:
        """Stop a container that runs nothing (idle, or still starting), gently."""
        idle = self._idle.get(spec_key(container.spec), [])
        if container in idle:
            idle.remove(container)
        container.retire()

    def is_idle(self, container: Container) -> bool:
        return container in self._idle.get(spec_key(container.spec), [])

    async def _reap_idle_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for containers in self._idle.values():
                for container in list(containers):
                    spec = container.spec
                    window = spec.scaledown_window_s or self.scaledown_window_s
                    buffer = spec.buffer_containers if self._in_use(spec) else 0
                    if (now - container.idle_since >= window and self._count(spec) > spec.min_containers
                            and self._count(spec, idle_only=True) > buffer):
                        log.info("scaling down idle container %s", container.id)
                        containers.remove(container)
                        container.retire()
            self._keep_minimums()

    def _count(self, spec: pb.ContainerSpec, idle_only: bool = False) -> int:
        key = spec_key(spec)
        if idle_only:
            return len(self._idle.get(key, []))
        return sum(1 for c in self._containers.values() if spec_key(c.spec) == key and not c.session) + \
            len(self._starting.get(key, []))

    def _in_use(self, spec: pb.ContainerSpec) -> bool:
        key = spec_key(spec)
        return any(c.run is not None and spec_key(c.spec) == key for c in self._containers.values())

    def note_spec(self, spec: pb.ContainerSpec) -> None:
        """Remember a spec that asks for standing containers, and start them now."""
        if spec.min_containers or spec.buffer_containers:
            self._standing[spec_key(spec)] = spec
            self._keep_minimums()

    def _keep_minimums(self) -> None:
        """Start containers for specs below min_containers, or (in use) short of their idle buffer."""
        for key, spec in self._standing.items():
            missing = spec.min_containers - self._count(spec)
            if self._in_use(spec):
                missing = max(missing, spec.buffer_containers - self._count(spec, idle_only=True)
                              - len(self._starting.get(key, [])))
            for _ in range(max(0, missing)):
                if self._reserves(spec):
                    break  # reserved containers start when a run gets the resources, never speculatively
                self.prewarm(spec)

    async def shutdown(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for tasks in self._starting.values():
            for task in tasks:
                task.cancel()
        containers = list(self._containers.values())
        for container in containers:
            if container.run is None:
                container.retire(grace_s=3.0)
            else:
                container.kill()
        for container in containers:
            if container.process is not None:
                await container.wait_exited()
        for zygote in self._zygotes.values():
            await zygote.stop()
        if self.slurm is not None:
            await self.slurm.close()

"""Containers: the worker processes that run cells and functions, and the pool that places runs on them.

A Container is one worker (``remote_agent.worker``) as the agent talks to it:
frames over its two streams, whatever started it. How it is started,
signalled and reserved is its launcher's (remote_agent/launchers/). The
ContainerPool composes the warm pool (idle containers by spec, scale-down,
standing containers: remote_agent/warm_pool.py), the admission queue (the fair
GPU/CPU/memory queue with eviction: remote_agent/admission.py) and sessions
(named containers: remote_agent/session_slots.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbmodal_wire import pb, shared_arena
from nbmodal_wire.frames import read_frame, write_frame
from remote_agent.admission import AdmissionQueue
from remote_agent.allocator import Allocation, Allocator
from remote_agent.container_exec import ExecStreams
from remote_agent.container_slots import ContainerSlots, limit_setting
from remote_agent.launch import MPL_BACKEND, LaunchPlan
from remote_agent.launchers import ContainerProcess, Launcher, LaunchRequest
from remote_agent.redaction import Redactor, StreamRedactor
from remote_agent.sandbox import MountError
from remote_agent.session_slots import Sessions, SessionSlot
from remote_agent.warm_pool import WarmPool

log = logging.getLogger(__name__)

CONTAINER_START_TIMEOUT_S = 120.0
# Output held back because it may be the start of a secret value is shown after this long without more.
REDACTION_HOLD_S = 0.2
# After a container's socket closes, how long it may take to exit by itself before it is killed.
EXIT_STATUS_GRACE_S = 3.0

Notify = Callable[[str], None]


class ContainerDied(Exception):
    def __init__(self, container: Container) -> None:
        self.returncode = container.returncode
        super().__init__(container.exit_description())


class Container:
    def __init__(self, container_id: str, spec: pb.ContainerSpec, logs_dir: Path, blob_dir: Path,
                 launcher: Launcher, session: str = "", plan: LaunchPlan | None = None) -> None:
        self.id = container_id
        self.blob_dir = blob_dir
        self.launcher = launcher
        self.plan = plan or LaunchPlan(python=sys.executable)
        self.spec = spec
        self.session = session
        self.log_path = logs_dir / f"{container_id}.log"
        self.created = time.time()
        self.idle_since = self.created
        self.process: ContainerProcess | None = None
        self.python = ""
        self.ready_info = pb.ContainerReady()
        self.run = None  # the Run in progress
        self.killed_by_agent = False
        self._writer: asyncio.StreamWriter | None = None
        self._finished: asyncio.Future | None = None
        self._fetched: asyncio.Future | None = None
        self._exited = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        self.allocation = Allocation()  # GPUs, cores and memory reserved for it
        self.agent_port = 0
        # The container's own credential: storage, and runs of its own run's scope (run_scopes.py);
        # revoked when it exits.
        self.token = secrets.token_urlsafe(24)
        self.execs = ExecStreams(container_id)  # processes started inside it (container_exec.py)
        # Its secrets (remote_agent/secrets.py): environment variables, masked in what its runs show.
        self.secret_env: dict[str, str] = {}
        self.redactor = Redactor(())
        self._streams: dict[int, StreamRedactor] = {}
        self._hold_timer: asyncio.TimerHandle | None = None
        # Who keeps it running if this agent dies (remote_agent/supervision.py), and its supervisor once it has one.
        self.supervision: Any = None
        self.supervisor: Any = None

    def set_secret_env(self, env: dict[str, str]) -> None:
        self.secret_env = dict(env)
        self.redactor = Redactor(env.values())

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def worker_pid(self) -> int:
        return self.process.worker_pid if self.process else 0

    @property
    def alive(self) -> bool:
        return self.process is not None and not self._exited.is_set()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    def exit_description(self) -> str:
        if self.process is None:
            return f"container {self.id} was never started"
        return self.process.exit_description(self.id)

    def environment(self) -> dict[str, str]:
        """The container's whole environment: the agent's, the worker's settings, the image's, the spec's."""
        env = dict(os.environ)
        env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", MPLBACKEND=MPL_BACKEND,
                   NBMODAL_CONTAINER_ID=self.id, NBMODAL_BLOB_DIR=str(self.blob_dir),
                   NBMODAL_AGENT_PORT=str(self.agent_port), NBMODAL_CONTAINER_TOKEN=self.token)
        if self.spec.gpu:
            # Only its own cards are visible to CUDA (UUIDs: unambiguous whatever the device order).
            gpus = self.allocation.gpus
            env.update(CUDA_VISIBLE_DEVICES=",".join(gpu.uuid for gpu in gpus), CUDA_DEVICE_ORDER="PCI_BUS_ID",
                       NBMODAL_GPUS=",".join(str(gpu.index) for gpu in gpus))
        if self.allocation.cores:
            env["NBMODAL_CPUS"] = ",".join(map(str, self.allocation.cores))  # the worker pins itself to them
        env.update(self.plan.env)
        env.update(self.spec.env)
        env.update(self.secret_env)
        if self.plan.imports:
            env["NBMODAL_IMAGE_IMPORTS"] = self.plan.imports
        return env

    async def start(self, notify: Notify | None = None) -> None:
        self.process = await self.launcher.launch(LaunchRequest(
            container_id=self.id, spec=self.spec, plan=self.plan, env=self.environment(),
            allocation=self.allocation, session=bool(self.session), log_path=self.log_path, token=self.token))
        reader, self._writer = await self.process.connect(notify)
        try:
            ready = await asyncio.wait_for(read_frame(reader, pb.FromContainer), CONTAINER_START_TIMEOUT_S)
        except asyncio.TimeoutError:
            ready = None
        if ready is None or not ready.HasField("ready") or ready.ready.mount_error:
            self.kill()
            await self.process.wait()
            self._exited.set()  # so the pool frees what was reserved for it
            self._writer.close()
            if ready is not None and ready.ready.mount_error:  # a Slurm job's volumes on its node
                raise MountError(ready.ready.mount_error)
            raise RuntimeError(f"{self.exit_description()} before it was ready; see {self.log_path}")
        self.python = ready.ready.python
        self.ready_info = ready.ready  # a gang member's addresses and free port (remote_agent/gangs.py)
        self.process.worker_pid = ready.ready.pid
        self._pump_task = asyncio.create_task(self._pump(reader), name=f"pump-{self.id}")
        log.info("container %s started (pid %d)%s", self.id, self.pid,
                 f" for session {self.session}" if self.session else "")

    async def execute(self, run, request: pb.RunRequest, payload_path: str = "",
                      cluster_env: dict[str, str] | None = None) -> pb.RunFinished:
        """Send one run to the container and wait for its result.

        Raises ContainerDied if the process ends first (killed after a cancel
        grace period or timeout, or crashed).
        """
        self.run = run
        self._finished = asyncio.get_running_loop().create_future()
        writer = self._started_writer()
        write_frame(writer, pb.ToContainer(execute=pb.Execute(
            run_id=run.id, kind=request.kind, payload=request.payload, code=request.code,
            filename=request.filename, first_line=request.first_line, timeout_s=request.timeout_s,
            keep_namespace=bool(self.session), max_result_bytes=request.max_result_bytes,
            client_python=request.client_python, cwd=request.cwd, payload_path=payload_path,
            generator=request.generator, cluster_env=cluster_env or {}, debug_sources=request.debug_sources)))
        request.ClearField("payload")  # the container has it; don't hold it for the run's lifetime
        request.ClearField("debug_sources")
        await writer.drain()
        # A run that lasts gets its container a supervisor: it then outlives this agent (supervision.py).
        watch = self.supervision.watch(self, run) if self.supervision is not None else None
        try:
            if request.timeout_s > 0:
                # The container stops the run itself at the timeout; this is the backstop. A timer, not
                # wait_for(shield()): those cost every result three more turns of the event loop.
                backstop = request.timeout_s + max(request.cancel_grace_s, 1.0)
                timer = asyncio.get_running_loop().call_later(backstop, self._backstop, run, self._finished)
                try:
                    return await self._finished
                finally:
                    timer.cancel()
            return await self._finished
        finally:
            if watch is not None:
                watch.cancel()
            self.run = None
            self._finished = None
            self.idle_since = time.time()

    def _backstop(self, run, finished: asyncio.Future) -> None:
        if not finished.done():  # the run outlived its timeout: its result comes as ContainerDied
            log.warning("run %s ignored its timeout; killing container %s", run.id, self.id)
            self.kill()

    def resume(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, run) -> None:
        """Serve a container re-adopted from an earlier agent (remote_agent/supervision.py), ``run`` in progress."""
        self._writer = writer
        self.run = run
        if run is not None:
            self._finished = asyncio.get_running_loop().create_future()
        self._pump_task = asyncio.create_task(self._pump(reader), name=f"pump-{self.id}")

    async def adopted_result(self) -> pb.RunFinished:
        """How the run in progress on an adopted container ends (raises ContainerDied)."""
        assert self._finished is not None
        try:
            return await self._finished
        finally:
            self.run = None
            self._finished = None
            self.idle_since = time.time()

    def socket(self):
        """The agent's end of its socket (a supervisor holds a duplicate), or None before it started."""
        return self._writer.get_extra_info("socket") if self._writer is not None else None

    async def fetch_value(self, name: str) -> pb.FetchValueReply:
        self._fetched = asyncio.get_running_loop().create_future()
        writer = self._started_writer()
        write_frame(writer, pb.ToContainer(fetch_value=pb.FetchValue(name=name)))
        await writer.drain()
        try:
            return await self._fetched
        finally:
            self._fetched = None

    def accepts_exec(self) -> bool:
        """Whether a process can be started inside it now (it is ready, and running or waiting warm)."""
        return self.alive and self._writer is not None and self._pump_task is not None

    async def send_exec(self, frame: pb.ExecToContainer) -> None:
        """One frame for a process inside it (remote_agent/container_exec.py), beside whatever it runs."""
        writer = self._started_writer()
        write_frame(writer, pb.ToContainer(exec=frame))
        await writer.drain()

    def send_input(self, answer: pb.InputAnswer) -> None:
        """A line (or end of input) for the stdin read its run's code is waiting in."""
        write_frame(self._started_writer(), pb.ToContainer(input_answer=answer))

    def _started_writer(self) -> asyncio.StreamWriter:
        if self._writer is None:
            raise RuntimeError(f"container {self.id} was given work before it started")
        return self._writer

    def interrupt(self) -> None:
        """KeyboardInterrupt in the running code (and SIGINT to its children)."""
        process = self._live_process()
        if process is not None:
            process.interrupt()

    def retire(self, grace_s: float = 5.0) -> None:
        """Stop an idle container gently: it sees its socket close, runs exit hooks, exits (else killed)."""
        if self.supervision is not None:
            self.supervision.forget(self)  # its supervisor's copy of the socket would keep it open
        if self._writer is not None:
            self._writer.close()
        asyncio.get_running_loop().call_later(grace_s, self.kill)

    def kill(self) -> None:
        self.killed_by_agent = True
        process = self._live_process()
        if process is not None:
            process.kill()

    def _live_process(self) -> ContainerProcess | None:
        """Its process, while it may still run (a signal to an ended one could reach a recycled pid)."""
        return self.process if self.alive else None

    async def wait_exited(self) -> None:
        process = self.process
        if self._pump_task is None:  # never got as far as ready: nothing reads its socket
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
            self._exited.set()
        await self._exited.wait()

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        """Route the container's messages to the run in progress."""
        while True:
            message = await read_frame(reader, pb.FromContainer)
            if message is None:
                break
            kind = message.WhichOneof("kind")
            if self.redactor and kind != "output":
                self._flush_held_output()  # what was held back comes before what follows it
            if kind == "output" and self.run is not None:
                self._emit_output(message.output)
                if self.run.backlogged:  # the run logs' writer is behind: its prints wait (runs.py)
                    await self.run.drained()
            elif kind == "display" and self.run is not None:
                self.run.emit(display=self.redactor.display(message.display))
            elif kind == "item" and self.run is not None:
                self.run.emit(item=message.item)
            elif kind == "input_started" and self.run is not None:
                self.run.emit(input_started=message.input_started)
            elif kind == "input_request" and self.run is not None:
                self.run.request_input(message.input_request)  # its code waits for stdin (a breakpoint)
            elif kind == "finished" and self._finished is not None and not self._finished.done():
                self._finished.set_result(self.redactor.finished(message.finished))
            elif kind == "fetched" and self._fetched is not None and not self._fetched.done():
                self._fetched.set_result(message.fetched)
            elif kind == "exec":
                self.execs.deliver(message.exec)
        # The socket closed: the process is gone or going.
        self._flush_held_output()
        process = self.process
        assert process is not None  # the pump starts once the process is ready
        # Let it end by itself first: killing it at once would hide its real signal or exit code
        # (a segfault would read as the agent's SIGKILL, bubblewrap's too).
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), EXIT_STATUS_GRACE_S)
        except asyncio.TimeoutError:
            pass
        process.kill()  # and whatever it started, in its process group
        await process.wait()
        self._exited.set()
        log.info("%s", self.exit_description())
        self.execs.close(self.exit_description(), kill_left_behind=self.launcher.processes_here)
        for future in (self._finished, self._fetched):
            if future is not None and not future.done():
                future.set_exception(ContainerDied(self))
        if self._writer is not None:
            self._writer.close()


    def _emit_output(self, output: pb.Output) -> None:
        """A chunk of output, with secret values masked (the end of a chunk that may begin one waits)."""
        assert self.run is not None
        if not self.redactor:
            self.run.emit_output(output)
            return
        stream = self._streams.setdefault(output.stream, StreamRedactor(self.redactor))
        shown = stream.feed(output.data)
        if shown:
            self.run.emit_output(pb.Output(stream=output.stream, data=shown))
        if stream.pending and self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_later(REDACTION_HOLD_S, self._flush_held_output)

    def _flush_held_output(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for number, stream in self._streams.items():
            rest = stream.flush()
            if rest and self.run is not None:
                self.run.emit_output(pb.Output(stream=number, data=rest))


def _reserves(spec: pb.ContainerSpec) -> bool:
    return bool(spec.gpu or spec.cpu or spec.memory_mib)


class ContainerPool:
    """Places runs on containers: warm ones, admitted ones, sessions' own; starts and forgets them."""

    def __init__(self, logs_dir: Path, blob_dir: Path, scaledown_window_s: float, allocator: Allocator,
                 launcher: Launcher, clock: Callable[[], float] = time.time, max_containers: int | None = None) -> None:
        self.logs_dir = logs_dir
        self.blob_dir = blob_dir
        self.launcher = launcher
        self.allocator = allocator
        self.agent_port = 0
        # Each live container's own token, and the container: read by the service's TokenInterceptor
        # (which calls a token may make) and its run scoping (which runs a token reaches).
        self.container_tokens: dict[str, Container] = {}
        self._containers: dict[str, Container] = {}
        self._counter = 0
        self._watchers: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self.warm = WarmPool(scaledown_window_s, self._start, self.release, self.containers, self._reserves, clock)
        # The cap on live containers (remote_agent/container_slots.py): every start below holds a slot. A Slurm
        # agent's containers are the cluster's jobs, bounded by its scheduler unless the cap is set explicitly.
        if max_containers is None:
            max_containers = limit_setting(default=None if launcher.processes_here else 0)
        self.slots = ContainerSlots(max_containers, self.warm.take, self.release, self._reclaim_idle)
        log.info("at most %s live containers (NBMODAL_MAX_CONTAINERS)", max_containers or "any number of")
        self.warm.take_slot = self._take_free_slot
        self.warm.slot_unused = self._slot_unused
        self.admission = AdmissionQueue(allocator, self.warm, self.release)
        self.session_slots = Sessions(self._start_for_session)
        # Supervisors for containers whose runs last, so they outlive this agent (set by the agent: supervision.py).
        self.supervision: Any = None
        # The secret environment of a container of a spec (set by the agent: remote_agent/secrets.py).
        self.secret_environments: Callable[[pb.ContainerSpec], dict[str, str]] = lambda spec: {}

    @property
    def scaledown_window_s(self) -> float:
        return self.warm.scaledown_window_s

    def start_reaper(self) -> None:
        self._reaper = asyncio.create_task(self.warm.reap_forever())

    # -- placement ---------------------------------------------------------

    async def acquire(self, spec: pb.ContainerSpec, session: str = "",
                      notify: Notify | None = None, run_id: str = "") -> tuple[Container, bool]:
        """A container for one run (``run_id``); the bool says whether it was started for it.

        A run that asks for GPUs, cores or memory waits in a fair queue until a
        warm container of its spec or enough free resources are there; one that
        needs a new container when every container slot is held waits for a slot
        (container_slots.py); ``notify`` hears why it waits.
        """
        if session:
            return await self.session_slots.acquire(spec, session, notify)
        if self._reserves(spec):
            return await self._acquire_reserved(spec, notify, run_id=run_id)
        container = self.warm.take(spec)
        if container is not None:
            return container, False
        starting = self.warm.take_starting(spec)
        if starting is not None:  # a warm-up already under way: take it
            return await self._container_of(starting), True
        container_id = self._new_id()
        warm = await self.slots.wait(container_id, spec, notify, run_id=run_id, take_warm=True)
        if warm is not None:  # an idle container of its spec came before a slot
            return warm, False
        return await self._container_of(self._start_task(spec, container_id, notify=notify)), True

    def release(self, container: Container) -> None:
        """A run is done with its container: a session's takes the next turn, others wait warm."""
        if container.session:
            self.session_slots.release(container)
            return
        if not container.alive:
            self._forget(container)
            return
        self.warm.put(container)
        self.admission.serve()
        self.slots.container_idle()

    async def _acquire_reserved(self, spec: pb.ContainerSpec, notify: Notify | None, session: str = "",
                                run_id: str = "", slot_timeout_s: float | None = None) -> tuple[Container, bool]:
        grant = await self.admission.admit(spec, notify, session)
        if grant.container is not None:
            return grant.container, False
        try:
            return await self._start_for_run(spec, session, allocation=grant.allocation, notify=notify,
                                             run_id=run_id, slot_timeout_s=slot_timeout_s, notify_start=False), True
        except BaseException:
            self.admission.give_back(grant)
            raise

    async def _start_for_session(self, spec: pb.ContainerSpec, session: str, notify: Notify | None,
                                 slot_timeout_s: float | None = None) -> Container:
        if self._reserves(spec):
            container, _ = await self._acquire_reserved(spec, notify, session, slot_timeout_s=slot_timeout_s)
            return container
        return await self._start_for_run(spec, session, notify=notify, slot_timeout_s=slot_timeout_s)

    async def start_dedicated(self, spec: pb.ContainerSpec, notify: Notify | None = None,
                              slot_timeout_s: float | None = None) -> Container:
        """A container of one user's own (a Sandbox: remote_agent/sandboxes.py): admitted like a run's when it
        reserves GPUs, cores or memory, never pooled or reused; what it holds is released when it is killed.
        Past the cap on live containers it waits for a slot, at most ``slot_timeout_s`` (NoContainerSlot)."""
        return await self._start_for_session(spec, "", notify, slot_timeout_s)

    def prewarm(self, spec: pb.ContainerSpec) -> None:
        """Start a container in the background for the next run with this spec."""
        self.warm.prewarm(spec)

    def note_spec(self, spec: pb.ContainerSpec) -> None:
        """Remember a spec that asks for standing containers, and start them now."""
        self.warm.note_spec(spec)

    def replace(self, container: Container) -> None:
        """After killing a container, have a fresh one ready in its place."""
        self._forget(container)
        if not container.session:
            self.prewarm(container.spec)

    async def _start_for_run(self, spec: pb.ContainerSpec, session: str = "", allocation: Allocation | None = None,
                             notify: Notify | None = None, run_id: str = "",
                             slot_timeout_s: float | None = None, notify_start: bool = True) -> Container:
        """Wait for a container slot (``notify`` hears why), then start a container in it; with ``notify_start``
        ``notify`` also hears how the start goes (a run admitted for reserved resources doesn't)."""
        container_id = self._new_id()
        await self.slots.wait(container_id, spec, notify, run_id=run_id, timeout_s=slot_timeout_s)
        start_notify = notify if notify_start else None
        return await self._container_of(self._start_task(spec, container_id, session, allocation, start_notify))

    def _new_id(self) -> str:
        self._counter += 1
        return f"c-{os.getpid()}-{self._counter}"

    def _start_task(self, spec: pb.ContainerSpec, container_id: str, session: str = "",
                    allocation: Allocation | None = None, notify: Notify | None = None) -> asyncio.Task:
        """Start a container whose slot is held for ``container_id``; the slot is freed if it never begins."""
        task = asyncio.create_task(self._start(spec, container_id, session, allocation, notify))
        task.add_done_callback(lambda t: self._slot_unused(container_id) if t.cancelled() else None)
        return task

    def _take_free_slot(self) -> str | None:
        """A container id holding a free slot for a speculative start, or None (the warm pool's ``take_slot``)."""
        container_id = self._new_id()
        return container_id if self.slots.try_take(container_id) else None

    def _slot_unused(self, container_id: str) -> None:
        if container_id not in self._containers:  # its container never began (else it frees it on exit)
            self.slots.release(container_id)

    def _reclaim_idle(self, stopping: set[str]) -> str | None:
        """Stop the least recently used idle container that may go, for a run waiting for a slot."""
        container = self.warm.reclaim_idle(stopping)
        if container is None:
            return None
        container.retire(grace_s=2.0)
        return container.id

    async def _container_of(self, start: asyncio.Task) -> Container:
        """Wait for a container start on behalf of a run.

        A run cancelled meanwhile doesn't cancel the start unless the launcher
        says so (a half-started container would leak its process and its
        reservation): the start finishes and the container joins the warm
        pool, or stops if it was a session's.
        """
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            if self.launcher.cancel_start_with_run:
                start.cancel()
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

    async def _start(self, spec: pb.ContainerSpec, container_id: str, session: str = "",
                     allocation: Allocation | None = None, notify: Notify | None = None) -> Container:
        """Launch a container; a container slot is already held for ``container_id``."""
        try:
            plan = await self.launcher.plan(spec, container_id)
        except BaseException:
            self.slots.release(container_id)
            raise
        container = Container(container_id, spec, self.logs_dir, self.blob_dir, self.launcher, session, plan)
        container.set_secret_env(self.secret_environments(spec))
        container.agent_port = self.agent_port
        container.supervision = self.supervision
        self.container_tokens[container.token] = container
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

    async def _forget_when_exited(self, container: Container) -> None:
        await container.wait_exited()
        self._forget(container)

    def adopt(self, container: Container, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
              run) -> None:
        """A container of an earlier agent, taken back with ``run`` in progress (remote_agent/supervision.py)."""
        container.supervision = self.supervision
        self._containers[container.id] = container
        self.slots.force(container.id)  # it is live already: it counts, whatever the cap
        self.container_tokens[container.token] = container  # its Dicts, Queues and Volumes keep working
        container.resume(reader, writer, run)
        watcher = asyncio.create_task(self._forget_when_exited(container))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    def _forget(self, container: Container) -> None:
        self._containers.pop(container.id, None)
        self.warm.remove(container)
        if container.alive:
            return
        self.container_tokens.pop(container.token, None)
        self.slots.release(container.id)  # its process has exited: the next run may have its slot
        shared_arena.sweep(self.blob_dir)  # its arena (values it returned), once nobody holds them
        if container.supervision is not None:
            container.supervision.forget(container)
        self.launcher.forget(container.id)
        if self.allocator.release(container.id):
            self.admission.serve()

    # -- sessions ----------------------------------------------------------

    def sessions(self) -> dict[str, SessionSlot]:
        return self.session_slots.slots

    async def stop_session(self, name: str) -> bool:
        return await self.session_slots.stop(name)

    # -- lifecycle ---------------------------------------------------------

    def containers(self) -> list[Container]:
        return list(self._containers.values())

    def _reserves(self, spec: pb.ContainerSpec) -> bool:
        """Whether this agent reserves GPUs, cores or memory for the spec (else its launcher's backend does)."""
        return self.launcher.reserves_resources and _reserves(spec)

    def retire(self, container: Container) -> None:
        """Stop a container that runs nothing (idle, or still starting), gently."""
        self.warm.remove(container)
        container.retire()

    def is_idle(self, container: Container) -> bool:
        return self.warm.is_idle(container)

    async def shutdown(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        self.warm.cancel_warmups()
        containers = list(self._containers.values())
        for container in containers:
            if container.run is None:
                container.retire(grace_s=3.0)
            else:
                container.kill()
        for container in containers:
            if container.process is not None:
                await container.wait_exited()
        await self.launcher.close()

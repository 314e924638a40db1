"""Runs that outlive the agent: each long-running local container gets a supervisor; the next agent re-adopts it.

A container whose run has lasted ``SUPERVISE_AFTER_S`` gets a supervisor (remote_agent/supervisor.py, a
small process of its own session) holding a duplicate of the agent's end of the container's socket, and
a record here, ``supervisors/<container id>.json``: what the next agent needs to take the container back
(its spec, session, reserved GPUs, cores and memory, its token, pids). From then on the run's events go
to disk at once rather than in 50 ms batches (``Run.durable``), so a crash loses none the notebook saw.

When the agent dies (kill -9), or restarts (SIGHUP, ``nbmodal agent restart``), the supervisors keep
their containers' sockets open and spool what the containers print. The next agent, before it reads its
runs, asks each supervisor for its container (``discover``): the runs on those containers are not
marked LOST; ``adopt`` re-registers each container with the pool (its token, so its Dicts, Queues and
Volumes keep working; its reservation, so nothing is allocated twice), replays the spooled frames into
the run's events with the next sequence numbers, and goes on reading the socket. A container that
ended while no agent was there has its spooled output replayed, then its run is LOST, as before.
``nbmodal agent stop`` releases the supervisors first: its containers end as they always did.

Not supervised: Slurm jobs (the launcher's own backend), sandboxes' containers, and runs younger than
``SUPERVISE_AFTER_S``, so that a short call costs nothing. An adopted container serves the rest of its
run and then stops (a session's namespace does not outlive the run in flight).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import shutil
import signal
import socket
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmodal_wire import pb
from remote_agent import supervisor as supervisor_script
from remote_agent.allocator import Allocation, Allocator
from remote_agent.launchers import ContainerProcess, Notify, Streams
from remote_agent.runs import Run, RunRegistry

if TYPE_CHECKING:
    from remote_agent.containers import Container

log = logging.getLogger(__name__)

SUPERVISE_AFTER_S = 1.0  # a run this old gets its container supervised (short calls never pay for one)
SUPERVISOR_READY_S = 10.0
ADOPT_TIMEOUT_S = 5.0
SUPERVISOR_SCRIPT = Path(supervisor_script.__file__)
_FRAME = struct.Struct("<I")  # as runs.py frames events.log


@dataclass
class Record:
    """What the next agent needs to take a container back (``supervisors/<container_id>.json``)."""

    container_id: str
    pid: int
    worker_pid: int
    token: str
    spec: str  # the ContainerSpec, serialized, base64
    session: str = ""
    gpus: list[int] = field(default_factory=list)  # GPU indices reserved for it
    cores: list[int] = field(default_factory=list)
    memory_mib: int = 0
    agent_port: int = 0  # where it reaches its agent's storage: the next agent listens there again
    python: str = ""

    def container_spec(self) -> pb.ContainerSpec:
        return pb.ContainerSpec.FromString(base64.b64decode(self.spec))

    def allocation(self, allocator: Allocator) -> Allocation:
        gpus = [gpu for gpu in allocator.gpus if gpu.index in set(self.gpus)]
        return Allocation(gpus, list(self.cores), self.memory_mib)

    @classmethod
    def load(cls, path: Path) -> Record:
        return cls(**json.loads(path.read_text()))


@dataclass
class Adoptable:
    """A container of an earlier agent: its record, its socket (None: it ended) and the output spooled meanwhile."""

    record: Record
    sock: socket.socket | None
    link: socket.socket | None
    spooled: bytes


class SupervisorLink:
    """The agent's end of the link to one container's supervisor."""

    def __init__(self, sock: socket.socket, pid: int = 0) -> None:
        self.sock = sock
        self.pid = pid

    def release(self) -> None:
        """The agent ends the container itself: the supervisor exits and lets go of the socket."""
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.send(supervisor_script.RELEASE)
        except OSError:
            pass
        self.sock.close()


class AdoptedProcess(ContainerProcess):
    """A container started by an earlier agent: not this agent's child, so its exit status is unknowable."""

    def __init__(self, record: Record, alive: bool) -> None:
        self._pid = record.pid
        self.worker_pid = record.worker_pid
        self._alive = alive
        self._ended: asyncio.Event = asyncio.Event()
        if not alive:
            self._ended.set()
            return
        try:
            pidfd = os.pidfd_open(record.worker_pid or record.pid)
        except ProcessLookupError:
            self._ended.set()
            return
        loop = asyncio.get_running_loop()

        def ended() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._ended.set()

        loop.add_reader(pidfd, ended)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return None  # its parent was the earlier agent (or a zygote): nobody here can read it

    async def connect(self, notify: Notify | None) -> Streams:
        raise RuntimeError("an adopted container's streams come from its supervisor")

    async def wait(self) -> int | None:
        await self._ended.wait()
        return None

    def interrupt(self) -> None:
        if not self._ended.is_set():
            _signal_group(self.worker_pid or self._pid, signal.SIGINT)

    def kill(self) -> None:
        if self._ended.is_set():
            return  # its pid may be another process's by now
        _signal_group(self.worker_pid or self._pid, signal.SIGKILL)
        if self.worker_pid and self.worker_pid != self._pid:  # the sandbox around it
            _signal_group(self._pid, signal.SIGKILL)

    def exit_description(self, container_id: str) -> str:
        if not self._alive:
            return f"container {container_id} (pid {self.worker_pid or self._pid}) ended while no agent was running"
        return (f"container {container_id} (pid {self.worker_pid or self._pid}, adopted from an earlier agent) "
                f"ended; its exit status went to that agent")


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


class Supervision:
    """The supervisors of this agent's containers, and the adoption of an earlier agent's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, exist_ok=True)
        self._starting: set[str] = set()

    # -- this agent's containers ----------------------------------------------

    def watch(self, container: Container, run: Run) -> asyncio.TimerHandle:
        """Supervise ``container`` once ``run`` has lasted SUPERVISE_AFTER_S (the caller cancels the handle)."""
        return asyncio.get_running_loop().call_later(SUPERVISE_AFTER_S, self._supervise_soon, container, run)

    def _supervise_soon(self, container: Container, run: Run) -> None:
        if container.supervisor is not None:
            run.durable = True
            return
        if container.id in self._starting or not container.alive:
            return
        self._starting.add(container.id)
        task = asyncio.ensure_future(self.supervise(container))

        def started(done: asyncio.Future) -> None:
            self._starting.discard(container.id)
            if not done.cancelled() and done.exception() is not None:
                log.warning("container %s has no supervisor (its run won't outlive this agent): %s",
                            container.id, done.exception())

        task.add_done_callback(started)

    async def supervise(self, container: Container) -> None:
        """Start the container's supervisor and write its record; returns once the supervisor listens."""
        sock = container.socket()
        if sock is None or container.supervisor is not None:
            return
        ours, theirs = socket.socketpair()
        try:
            with open(self.root / "supervisors.log", "ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", str(SUPERVISOR_SCRIPT),
                    "--container-fd", str(sock.fileno()), "--agent-fd", str(theirs.fileno()),
                    "--socket", str(self.root / f"{container.id}.sock"),
                    "--spool", str(self.root / f"{container.id}.spool"),
                    pass_fds=(sock.fileno(), theirs.fileno()), stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file, stderr=log_file, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        try:
            ready = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(ours, 1), SUPERVISOR_READY_S)
        except BaseException:
            ready = b""
        if ready != supervisor_script.READY:
            ours.close()
            raise RuntimeError(f"the supervisor of container {container.id} did not start; see "
                               f"{self.root / 'supervisors.log'}")
        asyncio.ensure_future(process.wait())  # reaped when it ends while this agent lives
        if not container.alive:  # it ended meanwhile
            SupervisorLink(ours).release()
            return
        container.supervisor = SupervisorLink(ours, process.pid)
        if container.run is not None:
            container.run.durable = True  # before the record: once it is there, no event waits in memory
        allocation = container.allocation
        record = Record(
            container_id=container.id, pid=container.pid, worker_pid=container.worker_pid, token=container.token,
            spec=base64.b64encode(container.spec.SerializeToString()).decode(), session=container.session,
            gpus=[gpu.index for gpu in allocation.gpus], cores=list(allocation.cores),
            memory_mib=allocation.memory_mib, agent_port=container.agent_port, python=container.python)
        _write_json(self.root / f"{container.id}.json", asdict(record))
        log.info("container %s is supervised (supervisor pid %d)", container.id, process.pid)

    def forget(self, container: Container) -> None:
        """The container ended or is being ended by this agent: its supervisor goes, and its record."""
        link = container.supervisor
        if link is None:
            return
        container.supervisor = None
        link.release()
        self._remove(container.id)

    def release_all(self, containers: list[Container]) -> None:
        """At a stop: the containers end with the agent, as they always did."""
        for container in containers:
            self.forget(container)

    async def keep_for_restart(self, containers: list[Container]) -> None:
        """Before a restart: supervise every container that runs something now, however young its run."""
        for container in containers:
            if container.run is not None and container.supervisor is None and container.alive:
                try:
                    await self.supervise(container)
                except Exception as exc:
                    log.warning("container %s will end with this agent: %s", container.id, exc)

    def _remove(self, container_id: str) -> None:
        for suffix in (".json", ".spool"):
            (self.root / f"{container_id}{suffix}").unlink(missing_ok=True)

    # -- an earlier agent's containers ---------------------------------------

    def discover(self) -> list[Adoptable]:
        """Take back the containers whose supervisors outlived their agent (blocking; at start, before the runs load).

        A supervisor still linked to a live agent (one handing over to us) answers busy and is left alone.
        """
        found = []
        for sock_path in self.root.glob("*.sock"):
            if not sock_path.with_suffix(".json").exists():  # its agent died before recording it: let it go
                _ask_to_end(sock_path)
        for path in sorted(self.root.glob("*.json")):
            try:
                record = Record.load(path)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("ignoring the unreadable supervisor record %s: %s", path, exc)
                path.unlink(missing_ok=True)
                continue
            try:
                sock, link = _ask_to_adopt(self.root / f"{record.container_id}.sock")
            except _Busy:
                continue
            spool_path = self.root / f"{record.container_id}.spool"
            try:
                spooled = spool_path.read_bytes()
            except FileNotFoundError:
                spooled = b""
            spool_path.unlink(missing_ok=True)
            if sock is None:
                path.unlink(missing_ok=True)  # nothing to take back: its run is replayed, then LOST
            found.append(Adoptable(record, sock, link, spooled))
            log.info("container %s of an earlier agent: %s, %d bytes of output spooled", record.container_id,
                     "alive, adopted" if sock is not None else "ended meanwhile", len(spooled))
        return found

    @staticmethod
    def preferred_port(adoptable: list[Adoptable]) -> int:
        """The port the adopted containers reach their agent at (0: any)."""
        return next((a.record.agent_port for a in adoptable if a.sock is not None and a.record.agent_port), 0)


class _Busy(Exception):
    pass


def _ask_to_adopt(path: Path) -> tuple[socket.socket | None, socket.socket | None]:
    """The container's socket and the new link, or (None, None) when no supervisor answers; _Busy if linked."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(ADOPT_TIMEOUT_S)
    try:
        conn.connect(str(path))
        conn.sendall(supervisor_script.ADOPT)
        message, fds, _flags, _ = socket.recv_fds(conn, 64, 1)
    except OSError:
        conn.close()
        return None, None
    if message != supervisor_script.GRANTED or not fds:
        for fd in fds:
            os.close(fd)
        conn.close()
        if message == supervisor_script.BUSY:
            raise _Busy()
        return None, None
    os.set_inheritable(fds[0], False)
    conn.settimeout(None)
    conn.setblocking(False)
    return socket.socket(fileno=fds[0]), conn


def _ask_to_end(path: Path) -> None:
    """A supervisor nobody can adopt: it lets its container's socket close (the container exits) and ends."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(ADOPT_TIMEOUT_S)
        try:
            conn.connect(str(path))
            conn.sendall(supervisor_script.END)
            conn.recv(16)
        except OSError:
            path.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.replace(tmp, path)


def adopted_ids(adoptable: list[Adoptable]) -> frozenset[str]:
    return frozenset(a.record.container_id for a in adoptable)


def clear_scratch(scratch_dir: Path, keep: frozenset[str]) -> None:
    """Remove the working dirs of an earlier agent's containers, except those being adopted."""
    if scratch_dir.is_dir():
        for entry in scratch_dir.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
    scratch_dir.mkdir(exist_ok=True)


def reserve(allocator: Allocator, adoptable: list[Adoptable]) -> None:
    """The adopted containers keep what they had: nothing of it goes to another container."""
    for found in adoptable:
        if found.sock is not None:
            allocator.transfer(found.record.allocation(allocator), found.record.container_id)


async def adopt(agent: Any, adoptable: list[Adoptable]) -> None:
    """Give each adopted container back its run (replayed from the spool, then read live) and its place in the pool."""
    from remote_agent.containers import Container

    for found in adoptable:
        record = found.record
        run = _run_of(agent.runs, record.container_id)
        spec = record.container_spec()
        container = Container(record.container_id, spec, agent.pool.logs_dir, agent.blob_dir, agent.launcher,
                              record.session)
        container.set_secret_env(agent.pool.secret_environments(spec))
        container.agent_port = record.agent_port
        container.python = record.python
        if found.sock is not None:
            container.token = record.token
            container.allocation = record.allocation(agent.allocator)
        container.process = AdoptedProcess(record, alive=found.sock is not None)
        reader = asyncio.StreamReader()
        reader.feed_data(found.spooled)
        writer = None
        if found.sock is not None:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.create_unix_connection(
                functools.partial(asyncio.StreamReaderProtocol, reader), sock=found.sock)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        else:
            reader.feed_eof()
        if found.link is not None:
            container.supervisor = SupervisorLink(found.link)
        if run is not None:
            run.container = container
            run.task = asyncio.ensure_future(_finish(agent, run, container))
        agent.pool.adopt(container, reader, writer, run)
        if run is None:
            agent.pool.retire(container)  # it ran nothing when its agent went: an idle container isn't kept
        log.info("adopted container %s%s", record.container_id, f" with run {run.id}" if run else " (idle: retired)")


def _run_of(runs: RunRegistry, container_id: str) -> Run | None:
    """The run in progress on the container, made live again: its events read back, its log's torn tail cut."""
    for run in runs.list():
        if not run.done and run.info.container_id == container_id:
            run.events = _read_events(run.dir / "events.log")
            run.info.last_seq = len(run.events)
            run.info.agent_pid = os.getpid()
            run.request = pb.RunRequest(run_id=run.id, kind=run.info.kind, label=run.info.label,
                                        session=run.info.session, detach=run.info.detach)
            run.durable = True
            run.save_info()
            return run
    return None


def _read_events(path: Path) -> list[pb.RunEvent]:
    try:
        data = path.read_bytes()
    except OSError:
        return []
    events, offset = [], 0
    while offset + _FRAME.size <= len(data):
        (length,) = _FRAME.unpack_from(data, offset)
        if offset + _FRAME.size + length > len(data):
            break
        events.append(pb.RunEvent.FromString(data[offset + _FRAME.size: offset + _FRAME.size + length]))
        offset += _FRAME.size + length
    if offset < len(data):  # a frame the dead agent half wrote: the next ones must follow whole ones
        os.truncate(path, offset)
    return events


async def _finish(agent: Any, run: Run, container: Container) -> None:
    from remote_agent.containers import ContainerDied

    try:
        finished = await container.adopted_result()
    except ContainerDied as died:
        finished = pb.RunFinished(state=pb.LOST, error=pb.ErrorInfo(
            type_name="nbmodal.ContainerDied", message=f"{died}; its log is {container.log_path}",
            traceback=f"nbmodal.ContainerDied: {died}\n", kind=pb.ERROR_CONTAINER_DIED))
    finally:
        run.container = None
    run.finish(finished)
    log.info("adopted run %s finished: %s", run.id, pb.RunState.Name(finished.state))
    if container.alive:
        agent.pool.retire(container)



"""Processes inside a running container: the agent's side of ContainerExec, and a container's log.

A ContainerExec stream starts one process in a container that is running or waiting warm (its worker starts
it, remote_agent/worker/exec_server.py, so the process shares the container's namespaces, environment and
GPUs). The agent gives the stream an exec id, forwards the client's ExecInput frames to the container as
``exec`` frames under that id, and hands the container's ``exec`` frames for it back to the stream. The
stream's last message is always ``exited``: the process's, or one the agent makes when the container ends
first. A client that goes away takes its process with it (``kill``: the process's whole session).

Used by ``nbmodal container exec``, ``nbmodal shell`` and ``Sandbox.exec`` alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Protocol

from nbmodal_wire import pb
from remote_agent import request_errors
from remote_agent.request_errors import RequestError
from remote_agent.worker.exec_server import kill_sessions

log = logging.getLogger(__name__)

_LOG_CHUNK = 1 << 16
_LOG_POLL_S = 0.2  # how often a followed log is looked at for more
# Output the client has taken is acknowledged to the container in steps of this (its window, 1 MiB, is
# remote_agent/worker/exec_server.py's OUTPUT_WINDOW_BYTES; a step must be well under it).
ACK_STEP_BYTES = 128 << 10
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # bounded: a longer name is no file name
_ids = itertools.count(1)


class ExecStreams:
    """One container's open exec streams: each one's queue of ExecOutput, by exec id."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self._queues: dict[str, asyncio.Queue[pb.ExecOutput]] = {}
        self._ended = ""  # why the container can take no more processes
        self._sessions: set[int] = set()  # each exec'd process's session id (its pid, as the container sees it)

    def open(self) -> tuple[str, asyncio.Queue[pb.ExecOutput]]:
        """A new exec id and the queue its output arrives on; NOT_FOUND once the container has ended."""
        if self._ended:
            raise RequestError(f"container {self.container_id} has ended ({self._ended})", request_errors.NOT_FOUND)
        exec_id = f"e-{next(_ids)}"
        self._queues[exec_id] = asyncio.Queue()
        return exec_id, self._queues[exec_id]

    def deliver(self, frame: pb.ExecFromContainer) -> None:
        """The container says something about one of its processes."""
        if frame.output.HasField("started"):
            self._sessions.add(frame.output.started.pid)
        outputs = self._queues.get(frame.exec_id)
        if outputs is not None:  # else its stream has gone; the process was told to die
            outputs.put_nowait(frame.output)

    def discard(self, exec_id: str) -> None:
        self._queues.pop(exec_id, None)

    def close(self, why: str, kill_left_behind: bool = False) -> None:
        """The container has ended: every open stream ends with ``exited`` saying so.

        ``kill_left_behind``: its processes are this host's, so what exec'd processes left running (a worker
        killed outright can't clean up) is killed here.
        """
        self._ended = why or "it exited"
        if kill_left_behind and self._sessions:
            kill_sessions(self._sessions, self.container_id)
        for outputs in self._queues.values():
            outputs.put_nowait(pb.ExecOutput(exited=pb.ExecExited(
                exit_code=137, signal=9, error=f"the container ended while the process ran: {self._ended}")))
        self._queues.clear()


class ExecContainer(Protocol):
    """What an exec stream needs of a container (remote_agent/containers.py's Container)."""

    id: str
    execs: ExecStreams

    @property
    def alive(self) -> bool: ...

    def accepts_exec(self) -> bool: ...

    async def send_exec(self, frame: pb.ExecToContainer) -> None: ...


async def serve(containers: Callable[[], Iterable[ExecContainer]], requests: AsyncIterator[pb.ExecInput],
                secret_env: Callable[[list[str]], dict[str, str]]) -> AsyncIterator[pb.ExecOutput]:
    """One ContainerExec call: its first request starts the process; yields its output, ``exited`` last.

    ``secret_env`` gives the environment of named secrets (the agent's store). Raises RequestError
    (NOT_FOUND: no such running container, or secret; INVALID: a bad start).
    """
    first = await anext(requests, None)
    if first is None:
        raise RequestError("a ContainerExec call sent nothing; its first message must be `start`")
    if not first.HasField("start"):
        raise RequestError(f"a ContainerExec call must begin with `start`, not `{first.WhichOneof('kind')}`")
    start = first.start
    _check_start(start)
    container = _find(containers, start.container_id)
    if start.secrets:
        # Resolved here, on the agent: the container gets values, never the store. Explicit env wins.
        env = {**secret_env(list(start.secrets)), **start.env}
        start.ClearField("secrets")
        start.env.clear()
        start.env.update(env)
    exec_id, outputs = container.execs.open()
    exited = False
    forwarding: asyncio.Task | None = None
    try:
        await container.send_exec(pb.ExecToContainer(exec_id=exec_id, input=first))
        forwarding = asyncio.create_task(_forward(container, exec_id, requests), name=f"exec-in-{exec_id}")
        taken = 0
        while True:
            output = await outputs.get()
            exited = output.HasField("exited")
            yield output  # returns once the client's side has room for it (gRPC's own flow control)
            if exited:
                return
            taken += len(output.output.data)
            if taken >= ACK_STEP_BYTES:
                await container.send_exec(pb.ExecToContainer(exec_id=exec_id, input=pb.ExecInput(output_ack=taken)))
                taken = 0
    finally:
        if forwarding is not None:
            forwarding.cancel()
        container.execs.discard(exec_id)
        if not exited and container.alive:
            # The client went away (or the agent is stopping): the process must not outlive its stream.
            with contextlib.suppress(Exception):
                await container.send_exec(pb.ExecToContainer(exec_id=exec_id, input=pb.ExecInput(kill=True)))


async def _forward(container: ExecContainer, exec_id: str, requests: AsyncIterator[pb.ExecInput]) -> None:
    """The client's stdin, window sizes and signals, in order, to the process."""
    try:
        async for request in requests:
            if request.HasField("start"):
                log.warning("exec %s: a second `start` on one stream; ignored", exec_id)
                continue
            if request.HasField("output_ack"):
                continue  # the agent's own to send
            await container.send_exec(pb.ExecToContainer(exec_id=exec_id, input=request))
    except (ConnectionError, RuntimeError) as exc:  # the container's socket closed: its streams end anyway
        log.info("exec %s: input not forwarded: %s", exec_id, exc)


def _check_start(start: pb.ExecStart) -> None:
    if not start.container_id:
        raise RequestError("ExecStart needs a container_id (see `nbmodal container list`)")
    if not start.argv:
        raise RequestError("ExecStart needs a command (argv is empty)")
    if start.timeout_s < 0:
        raise RequestError(f"timeout_s must be >= 0, not {start.timeout_s}")


def _find(containers: Callable[[], Iterable[ExecContainer]], container_id: str) -> ExecContainer:
    container = next((c for c in containers() if c.id == container_id), None)
    if container is None or not container.alive:
        raise RequestError(f"no running container {container_id!r} on this agent (it has ended, or never ran "
                           f"here: `nbmodal container list` shows the running ones)", request_errors.NOT_FOUND)
    if not container.accepts_exec():
        raise RequestError(f"container {container_id} is still starting; try again when `nbmodal container "
                           f"list` shows it running or idle", request_errors.CONFLICT)
    return container


def log_path(logs_dir: Path, container_id: str) -> Path:
    """Where the agent keeps a container's log (while it runs and after); INVALID for a malformed id."""
    if not _CONTAINER_ID.fullmatch(container_id):
        raise RequestError(f"{container_id!r} is not a container id (see `nbmodal container list`)")
    path = logs_dir / f"{container_id}.log"
    if not path.is_file():
        raise RequestError(f"no log for container {container_id!r} on this agent (`nbmodal container list` shows "
                           f"the containers; logs are kept in {logs_dir})", request_errors.NOT_FOUND)
    return path


async def read_log(path: Path, follow: bool, running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The log from its start; with ``follow``, what is added to it until ``running()`` turns false."""
    with path.open("rb") as log_file:
        while True:
            data = await asyncio.to_thread(log_file.read, _LOG_CHUNK)
            if data:
                yield data
                continue
            if not follow:
                return
            if not running():
                # It has ended: what it wrote last is there now.
                rest = await asyncio.to_thread(log_file.read)
                if rest:
                    yield rest
                return
            await asyncio.sleep(_LOG_POLL_S)

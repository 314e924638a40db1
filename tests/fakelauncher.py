"""A launcher that starts no process: each container is a coroutine speaking the worker's frames.

The pool, the admission queue and sessions run against it unchanged, in one
event loop, in milliseconds. A fake container says it is ready, answers every
run with SUCCEEDED, exits with code 0 when the agent closes its socket (a
retire) and with -9 when killed; with ``crash_at_start`` it exits with 1
before it is ready.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket

from nbmodal_wire import pb
from nbmodal_wire.frames import read_frame, write_frame
from remote_agent.launch import LaunchPlan
from remote_agent.launchers import ContainerProcess, Launcher, LaunchRequest, Notify, Streams

_pids = itertools.count(900_000)


class FakeProcess(ContainerProcess):
    def __init__(self, request: LaunchRequest, agent_streams: Streams, worker_socket: socket.socket,
                 crash_at_start: bool = False) -> None:
        self.request = request
        self.crash_at_start = crash_at_start
        self._pid = next(_pids)
        self._returncode: int | None = None
        self._streams = agent_streams
        self._ended = asyncio.Event()
        self.interrupts = 0
        self._writer: asyncio.StreamWriter | None = None
        self._worker_socket = worker_socket
        self._worker = asyncio.create_task(self._serve(worker_socket), name=f"fake-{request.container_id}")

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def connect(self, notify: Notify | None) -> Streams:
        return self._streams

    async def wait(self) -> int | None:
        await self._ended.wait()
        return self._returncode

    def interrupt(self) -> None:
        self.interrupts += 1

    def kill(self) -> None:
        if self._returncode is None:
            self._worker.cancel()
            self._end(-signal.SIGKILL)

    def exit_description(self, container_id: str) -> str:
        return f"container {container_id} (fake pid {self.pid}) ended with {self._returncode}"

    def _end(self, returncode: int) -> None:
        if self._returncode is None:
            self._returncode = returncode
        if self._writer is not None:
            self._writer.close()
        else:  # killed before it got going
            self._worker_socket.close()
        self._ended.set()

    async def _serve(self, worker_socket: socket.socket) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=worker_socket)
        if self.crash_at_start:  # as a worker that fails to import: gone before it says it is ready
            self._end(1)
            return
        write_frame(self._writer, pb.FromContainer(ready=pb.ContainerReady(pid=self.pid, python="3.x")))
        await self._writer.drain()
        while True:
            message = await read_frame(reader, pb.ToContainer)
            if message is None:  # the agent closed its end: exit as a retired worker does
                self._end(0)
                return
            if message.HasField("execute"):
                write_frame(self._writer, pb.FromContainer(finished=pb.RunFinished(state=pb.SUCCEEDED)))
                await self._writer.drain()


class FakeLauncher(Launcher):
    """Starts FakeProcesses; ``launched`` lists what it was asked to start, in order."""

    prewarms = False

    def __init__(self, reserves_resources: bool = True) -> None:
        self.reserves_resources = reserves_resources
        self.crash_at_start = False  # the next containers exit before they are ready
        self.launched: list[LaunchRequest] = []
        self.forgotten: list[str] = []

    async def plan(self, spec: pb.ContainerSpec, container_id: str) -> LaunchPlan:
        return LaunchPlan(python="python3")

    async def launch(self, request: LaunchRequest) -> ContainerProcess:
        self.launched.append(request)
        agent_side, worker_side = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=agent_side)
        return FakeProcess(request, (reader, writer), worker_side, self.crash_at_start)

    def forget(self, container_id: str) -> None:
        self.forgotten.append(container_id)

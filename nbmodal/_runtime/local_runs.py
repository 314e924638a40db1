"""A client's end of the local run socket (nbmodal_wire/local_runs.py): warm runs on the local agent
without gRPC.

Each connection carries one run at a time, one after another (as ``RunStream`` does, run_stream.py); a
client keeps those its runs finished with for the next ones, and opens another for a run started while
they are all busy (threads calling at once), up to ``MAX_CONNECTIONS``; beyond that, or when the socket
can't be opened, the caller takes the gRPC path. A run not followed to its ``finished`` event (an
interrupt, an error) closes its connection.
Errors come as the gRPC ones would (``LocalRunError`` is a ``grpc.RpcError`` with ``code()`` and
``details()``), so ``translate_rpc_error`` names them alike: a connection that drops is UNAVAILABLE, which
the follower treats as a lost agent (it reconnects and resumes).

Only the client of this machine's own agent uses it: the socket must be answered by the agent process
the client greeted over gRPC (checked with SO_PEERCRED), so an SSH host's agent, or a container's
agent token, never goes this way.

    runs = LocalRuns.for_agent(state_dir, token, agent_pid)
    call = (runs and runs.start(request)) or stub.Run(request, metadata=metadata)
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from nbmodal._runtime.run_stream import FollowedRun
from nbmodal_wire import local_runs as wire
from nbmodal_wire import pb

log = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")  # pid, uid, gid
_READ_BUFFER = 256 * 1024
# Nothing is waited on a socket that doesn't connect at once: the agent listens, or gRPC is used.
_CONNECT_TIMEOUT_S = 2.0
# Connections one client holds at most (runs in flight at once on the socket); more concurrent runs use gRPC.
MAX_CONNECTIONS = 32


class LocalRunError(grpc.RpcError, grpc.Call):
    """A run the local socket couldn't carry to its end, as the gRPC status its Run call would have had."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class LocalRuns:
    """The local run socket of one agent: connections opened as runs need them, each carrying one run at a time."""

    def __init__(self, path: Path, token: str, agent_pid: int) -> None:
        self._path = path
        self._token = token.encode()
        self._agent_pid = agent_pid
        self._state = threading.Lock()  # guards the fields below
        self._idle: list[_Connection] = []  # open, carrying no run: the next runs take these first
        self._open = 0  # connections open, idle or carrying a run
        self._usable = True  # False once the socket failed to open: this client then stays on gRPC
        self._closed = False

    @classmethod
    def for_agent(cls, state_dir: Path | str, token: str, agent_pid: int) -> LocalRuns | None:
        """The run socket of the local agent of ``state_dir`` (a Path: an SSH host's is "host:dir"), if any."""
        if not isinstance(state_dir, Path) or not agent_pid or os.environ.get("NBMODAL_LOCAL_RUNS") == "0":
            return None
        path = wire.socket_path(state_dir)
        return cls(path, token, agent_pid) if wire.usable_path(path) else None

    def start(self, request: pb.RunRequest) -> LocalRun | None:
        """Send ``request``; None when the socket is busy with another run, closed or not there (the caller
        then uses gRPC)."""
        with self._state:
            if not self._usable or self._closed:
                return None
            connection = self._idle.pop() if self._idle else None
            if connection is None:
                if self._open >= MAX_CONNECTIONS:
                    return None
                self._open += 1  # counted before it is opened, outside the lock (a connect may wait)
        if connection is None:
            connection = self._connect()
            if connection is None:
                with self._state:
                    self._open -= 1
                return None
        try:
            connection.send(wire.REQUEST, request.SerializeToString())
        except OSError as exc:
            # Sending failed before the agent took the run: the caller's gRPC call carries it instead.
            log.debug("local run socket failed (%s); this run uses gRPC", exc)
            self._broken(connection)
            return None
        except BaseException:
            self._broken(connection)
            raise
        return LocalRun(self, connection)

    def close(self) -> None:
        """Close the socket (the client is closing); later runs use gRPC."""
        with self._state:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for connection in idle:
            connection.close()

    def _connect(self) -> _Connection | None:
        if not self._path.exists():
            self._usable = False  # an agent without the socket (older, or its path too long)
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_CONNECT_TIMEOUT_S)
            sock.connect(str(self._path))
            sock.settimeout(None)
            pid, uid, _ = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            if pid != self._agent_pid or uid != os.getuid():
                # Not the agent this client greeted (a newer one took the state dir): gRPC finds out.
                sock.close()
                self._usable = False
                return None
            connection = _Connection(sock)
            connection.send(wire.TOKEN, self._token)
            return connection
        except OSError as exc:
            sock.close()
            log.debug("no local run socket at %s (%s); runs use gRPC", self._path, exc)
            self._usable = False
            return None

    def _finished(self, connection: _Connection) -> None:
        """Its run's finished event was read: the connection carries the next run."""
        with self._state:
            if not self._closed:
                self._idle.append(connection)
                return
            self._open -= 1
        connection.close()

    def _broken(self, connection: _Connection) -> None:
        """Its run was not followed to its end: that connection can't carry another."""
        with self._state:
            self._open -= 1
        connection.close()


class _Connection:
    """One connection: frames out with sendall, in through a buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb", buffering=_READ_BUFFER)

    def send(self, kind: int, body: bytes) -> None:
        self._sock.sendall(wire.frame(kind, body))

    def receive(self) -> tuple[int, bytes]:
        """The next frame; raises ConnectionError when the agent closed the connection."""
        header = self._reader.read(wire.HEADER.size)
        if len(header) < wire.HEADER.size:
            raise ConnectionResetError("the agent closed the local run socket")
        length, kind = wire.HEADER.unpack(header)
        body = self._reader.read(length)
        if len(body) < length:
            raise ConnectionResetError("the agent closed the local run socket")
        return kind, body

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.close()
        self._sock.close()


class LocalRun(FollowedRun):
    """One run's events on the local socket, iterated like a Run call's; ``cancel`` stops following it
    (the run goes on at the agent, as after cancelling a Run call)."""

    def __init__(self, runs: LocalRuns, connection: _Connection) -> None:
        self._runs = runs
        self._connection = connection
        self._settled = False

    def __iter__(self) -> Iterator[pb.RunEvent]:
        return self._events()

    def _events(self) -> Iterator[pb.RunEvent]:
        try:
            while True:
                try:
                    kind, body = self._connection.receive()
                except OSError as exc:
                    raise LocalRunError(grpc.StatusCode.UNAVAILABLE, f"local run socket: {exc}") from None
                if kind == wire.REFUSED:
                    name, details = wire.parse_refusal(body)
                    raise LocalRunError(getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN), details)
                if kind != wire.EVENT:
                    raise LocalRunError(grpc.StatusCode.INTERNAL, f"unexpected frame kind {kind} from the agent")
                event = pb.RunEvent.FromString(body)
                if event.HasField("finished"):
                    self._settle(finished=True)  # before the yield: the consumer stops reading here
                    yield event
                    return
                yield event
        finally:
            self._settle(finished=False)  # stopped before its finished event: that connection can't carry another

    def _settle(self, finished: bool) -> None:
        if self._settled:
            return
        self._settled = True
        if finished:
            self._runs._finished(self._connection)
        else:
            self._runs._broken(self._connection)

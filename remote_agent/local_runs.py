"""The agent's end of the local run socket (nbmodal_wire/local_runs.py): RunStream without gRPC.

Each connection first sends the agent's token; then each ``RunRequest`` frame is submitted as a
RunStream request is (``Agent.submit``) and answered with the run's events up to ``finished``. A run
the agent refuses is answered with a REFUSED frame carrying the gRPC status the Run call would have
ended with, and the connection closes. A client that goes away doesn't stop its run (as with Run).

    server = await serve_local_runs(state_dir, agent, token)   # None where no socket can be made
    ...
    close_local_runs(server, state_dir)
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
from google.protobuf.message import DecodeError

from nbmodal_wire import local_runs as wire
from nbmodal_wire import pb
from nbmodal_wire.gc_timing import collect_if_due
from remote_agent.request_errors import RequestError
from remote_agent.service import STATUS_FOR  # a refusal here is what it is on gRPC

if TYPE_CHECKING:
    from remote_agent.agent import Agent
    from remote_agent.runs import Run

log = logging.getLogger(__name__)

# A client's token frame is small; anything larger is not one of ours.
_MAX_TOKEN_BYTES = 1024
# The inode of each server's socket file, as bound: a newer agent's, bound at the same path, is left alone.
_bound: dict[int, int] = {}


class _Refused(Exception):
    def __init__(self, status: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.status = status


async def serve_local_runs(state_dir: Path, agent: Agent, token: str) -> asyncio.Server | None:
    """Listen on ``state_dir/runs.sock``; None (clients then use gRPC) where the path is too long or
    the socket can't be made."""
    path = wire.socket_path(state_dir)
    if not wire.usable_path(path):
        log.info("no local run socket: %s is longer than a Unix socket address may be", path)
        return None
    try:
        path.unlink(missing_ok=True)  # a predecessor's (it handed over, or died): the new agent serves here
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: _Connection(agent, token.encode()), path=str(path))
        os.chmod(path, 0o600)
        _bound[id(server)] = path.stat().st_ino
    except OSError as exc:
        log.warning("no local run socket at %s (clients use gRPC): %s", path, exc)
        return None
    return server


def close_local_runs(server: asyncio.Server | None, state_dir: Path) -> None:
    """Stop listening; the socket file goes unless a newer agent has bound the path meanwhile."""
    if server is None:
        return
    server.close()
    path = wire.socket_path(state_dir)
    try:
        if path.stat().st_ino == _bound.pop(id(server), None):
            path.unlink()
    except OSError:
        pass  # gone already


class _Connection(asyncio.Protocol):
    """One client connection: its token, then its runs one after another.

    A protocol, not a stream reader and a task: a request is submitted as its bytes arrive, and each
    event is written as the run records it (``Run.wake``), so neither direction waits for a turn of the
    event loop. Writes stop while the client reads slower than the run makes events (the transport's
    buffer is full) and go on from where they stopped, the waiting output coalesced (``Run.ready_events``).
    """

    def __init__(self, agent: Agent, token: bytes) -> None:
        self.agent = agent
        self.token = token
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()  # received, not yet taken as frames
        self.greeted = False  # the token came
        self.run: Run | None = None  # the run whose events this connection sends
        self.index = 0  # the events of ``run`` sent (the run's own RunStarted is known to the client)
        self.waking = False  # a wake-up at the run's next event is asked for
        self.paused = False  # the transport's buffer is full: events wait in the run until it drains
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._take_frames()

    def eof_received(self) -> bool:
        return False  # the client went away: close (its run goes on)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.run = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._send_events()

    # -- frames ------------------------------------------------------------------

    def _take_frames(self) -> None:
        """Handle the whole frames received, while no run is being sent (the next request waits for it)."""
        while not self.closed and self.run is None and len(self.buffer) >= wire.HEADER.size:
            length, kind = wire.HEADER.unpack_from(self.buffer)
            if not self.greeted and (kind != wire.TOKEN or length > _MAX_TOKEN_BYTES):
                self._close()  # as the gRPC port: no word for a client that lacks the token
                return
            if len(self.buffer) < wire.HEADER.size + length:
                return
            body = bytes(self.buffer[wire.HEADER.size: wire.HEADER.size + length])
            del self.buffer[: wire.HEADER.size + length]
            if not self.greeted:
                if not hmac.compare_digest(body, self.token):
                    self._close()
                    return
                self.greeted = True
                continue
            self._start(kind, body)

    def _start(self, kind: int, body: bytes) -> None:
        try:
            request = _request(kind, body)
            run = _submit(self.agent, request)
        except _Refused as refused:
            self._write(wire.frame(wire.REFUSED, wire.refusal(refused.status.name, str(refused))))
            self._close()  # after what was written is sent
            return
        except Exception:  # the client sees the connection end (UNAVAILABLE) and asks after its run
            log.exception("a run on the local run socket failed to start")
            self._close()
            return
        self.run, self.index, self.waking = run, 1, False  # the client knows the id already
        self._send_events()

    def _woken(self, run: Run) -> None:
        if run is self.run:  # not a run this connection has done with
            self.waking = False
            self._send_events()

    def _ending(self, run: Run) -> None:
        if run is self.run:  # its result hasn't been sent meanwhile
            self._send_events(ending=True)

    def _send_events(self, ending: bool = False) -> None:
        """Write the run's events recorded since the last ones written; then wait for its next (or end)."""
        run = self.run
        if run is None or self.paused or self.closed:
            return
        try:
            for event, after in run.ready_events(self.index):
                self.index = after
                self._write(wire.frame(wire.EVENT, event.SerializeToString()))
                if event.HasField("finished"):
                    self.run = None
                    # The next request (a client sends it after this event) is taken on a turn of its own,
                    # not inside the recording of this run's result; a collection that is due, while the
                    # result travels (gc_timing.py).
                    loop = asyncio.get_running_loop()
                    loop.call_soon(self._take_frames)
                    loop.call_soon(collect_if_due)
                    return
                if self.paused or self.closed:
                    return  # resume_writing sends the rest
        except Exception:  # a run's events must go on being recorded whatever happens to one follower
            log.exception("sending run %s's events on the local run socket failed", run.id)
            self._close()
            return
        if run.done:
            # Its state is final but its result isn't there: Run.finish records events before the result
            # (an output marker), and we are inside it. Look again once it is over; still none: the run was
            # lost, and the connection ends, so that its client asks what happened.
            if ending:
                self._close()
            else:
                asyncio.get_running_loop().call_soon(self._ending, run)
            return
        if not self.waking:
            self.waking = True
            run.wake(lambda: self._woken(run))

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def _close(self) -> None:
        self.closed = True
        self.run = None
        if self.transport is not None:
            self.transport.close()


def _request(kind: int, body: bytes) -> pb.RunRequest:
    if kind != wire.REQUEST:
        raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"frame kind {kind} is not a run request")
    try:
        return pb.RunRequest.FromString(body)
    except DecodeError as exc:
        raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the run request can't be decoded: {exc}") from None


def _submit(agent: Agent, request: pb.RunRequest):
    from remote_agent.agent import Draining

    try:
        return agent.submit(request)
    except RequestError as exc:
        raise _Refused(STATUS_FOR[exc.code], str(exc)) from None
    except ValueError as exc:
        raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    except Draining as exc:
        raise _Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

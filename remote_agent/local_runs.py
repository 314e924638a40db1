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
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError

from nbmodal_wire import local_runs as wire
from nbmodal_wire import pb
from remote_agent.request_errors import RequestError
from remote_agent.service import STATUS_FOR  # a refusal here is what it is on gRPC

if TYPE_CHECKING:
    from remote_agent.agent import Agent

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
        server = await asyncio.start_unix_server(lambda r, w: _serve_connection(r, w, agent, token), path=str(path))
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


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, agent: Agent,
                            token: str) -> None:
    try:
        kind, body = await _read(reader)
        if kind != wire.TOKEN or not hmac.compare_digest(body, token.encode()):
            return  # as the gRPC port: no word for a client that lacks the token
        while True:
            kind, body = await _read(reader)
            if kind is None:
                return
            try:
                request = _request(kind, body)
                run = _submit(agent, request)
            except _Refused as refused:
                writer.write(wire.frame(wire.REFUSED, wire.refusal(refused.status.name, str(refused))))
                await writer.drain()
                return
            finished = False
            async for event in run.follow(after_seq=1):  # the client knows the id already
                finished = event.HasField("finished")
                writer.write(wire.frame(wire.EVENT, event.SerializeToString()))
                await writer.drain()
            if not finished:  # lost: end the connection, so that its client asks what happened
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return  # the client went away; its run goes on
    finally:
        writer.close()


async def _read(reader: asyncio.StreamReader) -> tuple[int | None, bytes]:
    try:
        header = await reader.readexactly(wire.HEADER.size)
    except asyncio.IncompleteReadError:
        return None, b""
    length, kind = wire.HEADER.unpack(header)
    if kind == wire.TOKEN and length > _MAX_TOKEN_BYTES:
        return None, b""
    return kind, bytes(await reader.readexactly(length))


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

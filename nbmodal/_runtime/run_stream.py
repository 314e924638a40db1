"""One long-lived RunStream call per client: the fast path of a warm run.

A new gRPC call costs about a third of a warm ``f.remote()`` on top of the message itself. A client
keeps one bidirectional RunStream open to its agent and sends its runs on it one after another:
each request is answered by the run's events, its ``finished`` event last, and the stream is then
free for the next run.

One run at a time: while a run follows on the stream, another thread's run takes the ordinary
``Run`` call (``RunStream.start`` returns None), so concurrent callers never wait for each other. A
stream whose run was not followed to its ``finished`` event (an interrupt, an error, a caller that
stopped reading) is closed, and the next run opens a new one. An agent without RunStream is asked
once; the client then uses ``Run`` only.

Example::

    stream = RunStream(stub.RunStream, stub.Run, metadata)
    call = stream.start(request) or stub.Run(request, metadata=metadata)
    for event in call: ...
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from nbmodal_wire import pb

log = logging.getLogger(__name__)

_END = None  # put on a stream's request queue: its request iterator ends


class RunStream:
    """A client's RunStream call, opened on first use, carrying one run at a time."""

    def __init__(self, open_stream: Callable[..., Any], open_run: Callable[..., Any],
                 metadata: tuple[tuple[str, str], ...]) -> None:
        self._open_stream = open_stream  # stub.RunStream
        self._open_run = open_run  # stub.Run: the fallback of an agent without RunStream
        self._metadata = metadata
        self._busy = threading.Lock()  # held from a run's request until its finished event is read
        self._state = threading.Lock()  # guards the fields below
        self._call: Any = None
        self._requests: queue.SimpleQueue[pb.RunRequest | None] | None = None
        self._supported = True
        self._closed = False

    def start(self, request: pb.RunRequest) -> StreamedRun | None:
        """Send ``request`` on the stream; None when the stream is busy with another run, closed, or the
        agent has no RunStream (the caller then makes an ordinary Run call)."""
        if not self._supported or self._closed or not self._busy.acquire(blocking=False):
            return None
        try:
            with self._state:
                if self._call is None:
                    self._requests = queue.SimpleQueue()
                    self._call = self._open_stream(_request_iterator(self._requests), metadata=self._metadata)
                call, requests = self._call, self._requests
            assert requests is not None
            requests.put(request)
        except BaseException:
            self._busy.release()
            raise
        return StreamedRun(self, call, request)

    def close(self) -> None:
        """End the stream (the client is closing); later runs use ordinary Run calls."""
        with self._state:
            self._closed = True
        self._drop(None)

    def _finished(self) -> None:
        """The run's finished event was read: the stream is free for the next run."""
        self._busy.release()

    def _broken(self, call: Any) -> None:
        """The run on ``call`` was not followed to its end: close that stream, free the slot."""
        self._drop(call)
        self._busy.release()

    def _unsupported(self, call: Any) -> None:
        log.debug("the agent has no RunStream; runs use Run calls")
        self._supported = False
        self._broken(call)

    def _drop(self, call: Any) -> None:
        with self._state:
            if call is not None and call is not self._call:
                return
            call, requests = self._call, self._requests
            self._call = self._requests = None
        if requests is not None:
            requests.put(_END)
        if call is not None:
            call.cancel()


def _request_iterator(requests: queue.SimpleQueue[pb.RunRequest | None]) -> Iterator[pb.RunRequest]:
    # gRPC reads this on a thread of its own; it ends when the stream is dropped.
    while True:
        request = requests.get()
        if request is _END:
            return
        yield request


class FollowedRun(grpc.Call):
    """A run followed on a connection shared with other runs, iterated like a Run call's (the grpc.Call
    surface callers use); subclasses give ``_settle``, which hands the connection back once."""

    _settled = False  # the connection was given back (finished, broken or cancelled)

    def _settle(self, finished: bool) -> None:
        raise NotImplementedError

    def cancel(self) -> bool:
        self._settle(finished=False)
        return True

    def is_active(self) -> bool:
        return not self._settled

    def time_remaining(self) -> float | None:
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK if self._settled else grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return ""


class StreamedRun(FollowedRun):
    """One run's events on the stream, iterated like a Run call's; ``cancel`` stops following it
    (the run goes on at the agent, as after cancelling a Run call)."""

    def __init__(self, stream: RunStream, call: Any, request: pb.RunRequest) -> None:
        self._stream = stream
        self._call = call
        self._request = request
        self._settled = False  # the stream's slot was given back (finished, broken or cancelled)
        self._fallback: Any = None  # the Run call made instead, on an agent without RunStream

    def __iter__(self) -> Iterator[pb.RunEvent]:
        return self._events()

    def _events(self) -> Iterator[pb.RunEvent]:
        received = False
        try:
            for event in self._call:
                received = True
                if event.HasField("finished"):
                    self._settle(finished=True)  # before the yield: the consumer stops reading here
                    yield event
                    return
                yield event
        except grpc.RpcError as exc:
            if received or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            self._settle(finished=False, unsupported=True)
            self._fallback = self._stream._open_run(self._request, metadata=self._stream._metadata)
            yield from self._fallback
            return
        finally:
            self._settle(finished=False)  # stopped before its finished event: that stream can't carry another

    def _settle(self, finished: bool, unsupported: bool = False) -> None:
        if self._settled:
            return
        self._settled = True
        if finished:
            self._stream._finished()
        elif unsupported:
            self._stream._unsupported(self._call)
        else:
            self._stream._broken(self._call)

    # -- grpc.Call: what differs from FollowedRun's ------------------------------

    def cancel(self) -> bool:
        if self._fallback is not None:
            return self._fallback.cancel()
        return super().cancel()

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK if self._settled else self._call.code()

    def details(self) -> str:
        return self._call.details() or ""

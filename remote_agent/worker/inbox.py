"""The container's reader of the agent's frames, whatever the main thread is doing.

The main thread runs user code; frames that must reach the container *during* a run (a process
to start beside it, a debugger's input, a port to forward) cannot wait for it to finish. So a
thread of its own reads the frames that come while the main thread is busy. The kinds the main
loop serves (``execute``, ``fetch_value``) are queued for it; any other kind goes to the handler
registered for it with ``on()`` (a handler must not block: it hands long work to a thread of its own).

While the main thread is idle it reads the socket itself: a warm call's frame then wakes one
thread, not the reader and then the main thread (a wake-up, a thread switch and two futex calls
less per call: ~20 of the ~100 µs of CPU a warm call cost the container, measured). Both threads
wait in an epoll of their own with the socket added ``EPOLLEXCLUSIVE``, the main thread's first:
the kernel wakes the first such waiter that is waiting, so a frame wakes the main thread when it
waits and the reader when it doesn't. Whoever wakes reads every whole frame there is (under one
lock, so frames are handled in the order sent), and the reader wakes the main thread (a pipe in
its epoll) when it queued a frame for it. Without ``EPOLLEXCLUSIVE`` (not Linux, a kernel before
4.5) the reader reads every frame and queues the main loop's, as it always did.

    inbox = Inbox(sock)
    inbox.on("exec", processes.handle)
    inbox.start()
    message = inbox.next_for_main()   # the next execute/fetch_value frame; None once the agent left
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import threading
from collections.abc import Callable

from nbmodal_wire import pb
from nbmodal_wire.frames import HEADER, recv_exactly

log = logging.getLogger("remote_agent.worker")

MAIN_LOOP_KINDS = frozenset({"execute", "fetch_value"})
_CHUNK = 1 << 16


class Inbox:
    """Reads the agent's frames from ``sock``; ``next_for_main()`` gives the main loop its frames.

    ``busy`` is set by the main loop while a run executes on the main thread.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.busy = False  # a run is executing on the main thread
        self._for_main: queue.SimpleQueue[pb.ToContainer | None] = queue.SimpleQueue()
        self._handlers: dict[str, Callable[[pb.ToContainer], None]] = {}
        self._read_lock = threading.Lock()  # one reader at a time, of whole frames, handled in order
        self._closed = False
        self._main_poll: select.epoll | None = None  # None: the thread reads every frame
        self._wake_read = self._wake_write = -1

    def on(self, kind: str, handler: Callable[[pb.ToContainer], None]) -> None:
        """Call ``handler(message)`` for each frame whose ``kind`` is this (on whichever thread read it)."""
        self._handlers[kind] = handler

    def start(self) -> None:
        main_poll = _exclusive_poll(self._sock)  # first: the kernel tries the main thread's first
        thread_poll = _exclusive_poll(self._sock) if main_poll is not None else None
        if main_poll is not None and thread_poll is not None:
            self._wake_read, self._wake_write = os.pipe()
            os.set_blocking(self._wake_read, False)
            os.set_blocking(self._wake_write, False)
            main_poll.register(self._wake_read, select.EPOLLIN)
            self._main_poll = main_poll
        elif main_poll is not None:
            main_poll.close()
        threading.Thread(target=self._read, args=(thread_poll,), name="agent-inbox", daemon=True).start()

    def next_for_main(self) -> pb.ToContainer | None:
        """The next ``execute``/``fetch_value`` frame; None once the agent has gone away."""
        poller = self._main_poll
        if poller is None:
            message = self._for_main.get()
            if message is None:
                self._for_main.put(None)  # and for every later call
            return message
        while True:
            if not self._for_main.empty():
                return self._for_main.get_nowait()
            if self._closed:
                return None
            for fd, _ in poller.poll():
                if fd == self._wake_read:
                    _drain(fd)
            self._read_available(from_thread=False)

    def _read(self, poller: select.epoll | None) -> None:
        while not self._closed:
            if poller is not None:
                poller.poll()
            self._read_available(from_thread=True, block=poller is None)
        if poller is not None:
            poller.close()

    def _read_available(self, from_thread: bool, block: bool = False) -> None:
        """Read and handle the whole frames the socket has (waiting for the rest of one begun; with
        ``block``, for a first one)."""
        with self._read_lock:
            if self._closed:
                return
            messages = self._read_frames(block)
            if messages is None:
                self._on_closed(from_thread)
                return
            queued = False
            for message in messages:
                queued = self._handle(message) or queued
        if queued and from_thread:
            self._wake_main()  # it may be waiting in its epoll

    def _handle(self, message: pb.ToContainer) -> bool:
        """Queue a main loop frame (True) or call its kind's handler."""
        kind = message.WhichOneof("kind")
        if kind in MAIN_LOOP_KINDS:
            self._for_main.put(message)
            return True
        handler = self._handlers.get(kind or "")
        if handler is None:
            log.warning("no handler for a %r frame from the agent; ignored", kind)
            return False
        try:
            handler(message)
        except Exception:  # one bad frame must not stop the container hearing the agent
            log.exception("handling a %r frame failed", kind)
        return False

    def _on_closed(self, from_thread: bool) -> None:
        if from_thread and self.busy:
            # The main thread is in user code and would never look at the queue.
            log.info("agent went away during a run; exiting")
            os._exit(0)
        self._closed = True
        self._for_main.put(None)
        if from_thread:
            self._wake_main()

    def _wake_main(self) -> None:
        if self._main_poll is not None:
            try:
                os.write(self._wake_write, b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups the main thread has yet to see: it will
                pass

    def _read_frames(self, block: bool) -> list[pb.ToContainer] | None:
        """The whole frames the socket has now ([] if none), or None once the peer has closed it."""
        try:
            data: bytes | bytearray | None = self._sock.recv(_CHUNK, 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return []
        except ConnectionError:
            return None
        messages = []
        pos = 0
        while data:
            if len(data) - pos < HEADER.size:
                data, pos = self._read_more(data[pos:], HEADER.size), 0
                if data is None:
                    return None
            (length,) = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length
            if len(data) < end:  # the rest of a frame the agent has begun sending
                data, pos, end = self._read_more(data[pos:], HEADER.size + length), 0, HEADER.size + length
                if data is None:
                    return None
            messages.append(pb.ToContainer.FromString(memoryview(data)[pos + HEADER.size:end]))
            if end == len(data):
                break
            pos = end
        return messages if data else None

    def _read_more(self, start: bytes | bytearray, size: int) -> bytearray | None:
        """``start`` followed by what the socket brings until it is ``size`` bytes; None at its end."""
        try:
            return recv_exactly(self._sock, size, start)
        except ConnectionError:
            return None

def _exclusive_poll(sock: socket.socket) -> select.epoll | None:
    """An epoll that waits for ``sock`` to be readable as an exclusive waiter; None where there is none."""
    exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
    if not exclusive or not hasattr(select, "epoll"):
        return None
    poller = select.epoll()
    try:
        poller.register(sock.fileno(), select.EPOLLIN | exclusive)
    except OSError:  # EINVAL: a kernel without it
        poller.close()
        return None
    return poller


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass

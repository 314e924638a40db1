"""Capture of file descriptors 1 and 2 inside a container.

Both descriptors are pointed at pipes, so prints, C extensions and child
processes are all captured. A reader thread per pipe forwards chunks as they
arrive. ``sync()`` drains both pipes itself before returning, so a run's
displays and result are sent only after the output written before them.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable

from nbmodal_wire import pb

_CHUNK = 1 << 16


class FdCapture:
    def __init__(self, send_output: Callable[[int, bytes], None]) -> None:
        self._pipes: list[_Pipe] = []
        # Both pipes' read ends: one poll() says whether anything is unread (a run that printed nothing
        # costs one system call here, not a failed read per pipe). Threads (concurrent inputs) sync at once,
        # and a poll object refuses a second caller while one polls: hence its lock.
        self._unread = select.poll()
        self._unread_lock = threading.Lock()
        for fd, stream in ((1, pb.STDOUT), (2, pb.STDERR)):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._pipes.append(_Pipe(fd, read_end, stream, send_output))
            self._unread.register(read_end, select.POLLIN)

    def sync(self) -> None:
        """Forward everything written to fd 1 and 2 so far."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        with self._unread_lock:
            unread = self._unread.poll(0)
        if unread:
            for pipe in self._pipes:
                pipe.drain()
        else:  # nothing unread, but a reader thread may be sending a chunk it read: that goes first
            for pipe in self._pipes:
                pipe.wait_for_reader()


class _Pipe:
    def __init__(self, fd: int, read_end: int, stream: int, send_output: Callable[[int, bytes], None]) -> None:
        self._read_end = read_end
        self._stream = stream
        self._send_output = send_output
        # Whoever holds the lock reads and sends, so chunks leave in the order written.
        self._lock = threading.Lock()
        os.set_blocking(read_end, False)
        threading.Thread(target=self._pump, name=f"fd{fd}-reader", daemon=True).start()

    def wait_for_reader(self) -> None:
        """Return once the reader thread has sent what it has read (it reads and sends holding the lock)."""
        with self._lock:
            pass

    def drain(self) -> None:
        with self._lock:
            while True:
                try:
                    chunk = os.read(self._read_end, _CHUNK)
                except BlockingIOError:
                    return
                if not chunk:
                    return
                self._send_output(self._stream, chunk)

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        while True:
            poller.poll()
            self.drain()

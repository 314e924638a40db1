"""Capture of file descriptors 1 and 2 inside a container.

Both descriptors are pointed at pipes, so prints, C extensions and child
processes are all captured. A reader thread per pipe forwards chunks as they
arrive. ``sync()`` writes a marker into each pipe and waits until the readers
have forwarded everything before it: the run's result and displays are sent
only after the output that preceded them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from remote_agent.proto import agent_pb2 as pb

# NUL bytes make a collision with real output very unlikely.
_MARKER = b"\x00\x1b[nbmodal-sync]\x00"


class FdCapture:
    def __init__(self, send_output: Callable[[int, bytes], None]) -> None:
        self._send_output = send_output
        self._readers: list[_PipeReader] = []
        for fd, stream in ((1, pb.STDOUT), (2, pb.STDERR)):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._readers.append(_PipeReader(fd, read_end, stream, send_output))

    def sync(self, timeout: float = 5.0) -> None:
        """Forward everything written to fd 1 and 2 so far."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for reader in self._readers:
            reader.request_sync()
        for reader in self._readers:
            reader.wait_sync(timeout)


class _PipeReader:
    def __init__(self, fd: int, read_end: int, stream: int, send_output: Callable[[int, bytes], None]) -> None:
        self._fd = fd
        self._read_end = read_end
        self._stream = stream
        self._send_output = send_output
        self._synced = threading.Semaphore(0)
        threading.Thread(target=self._pump, name=f"fd{fd}-reader", daemon=True).start()

    def request_sync(self) -> None:
        os.write(self._fd, _MARKER)

    def wait_sync(self, timeout: float) -> None:
        self._synced.acquire(timeout=timeout)

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_end, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            while (i := pending.find(_MARKER)) >= 0:
                if i:
                    self._send_output(self._stream, pending[:i])
                pending = pending[i + len(_MARKER):]
                self._synced.release()
            keep = _marker_prefix_length(pending)
            if len(pending) > keep:
                self._send_output(self._stream, pending[: len(pending) - keep])
                pending = pending[len(pending) - keep:]


def _marker_prefix_length(data: bytes) -> int:
    """Length of the longest tail of ``data`` that could start a marker."""
    tail = data[-(len(_MARKER) - 1):]
    start = tail.find(b"\x00")
    while start >= 0:
        if _MARKER.startswith(tail[start:]):
            return len(tail) - start
        start = tail.find(b"\x00", start + 1)
    return 0

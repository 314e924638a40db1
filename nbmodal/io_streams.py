"""``nbmodal.io_streams``: Modal's ``StreamReader`` and ``StreamWriter``, a Sandbox process's streams.

A ``StreamReader`` is one output stream (stdout or stderr) of a process in a sandbox (``sb.exec(...)``)
or of the sandbox's entrypoint (``sb.stdout``): iterate it for its lines as they come, or ``read()`` it
whole once the process has ended. A ``StreamWriter`` is a process's stdin: ``write()``, then ``drain()``
(here writes are sent in order as they are made: ``drain`` returns once they are on their way), and
``write_eof()`` to close it. Text by default (``text=False`` in ``exec`` gives bytes). Each blocking
method has an ``.aio`` twin, and ``async for`` works too.

    p = sb.exec("cat")
    p.stdin.write(b"hello\\n")
    p.stdin.write_eof()
    p.stdin.drain()
    for line in p.stdout:
        print(line, end="")
"""

from __future__ import annotations

import codecs
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from nbmodal._aio import WithAio, iterate_in_thread

log = logging.getLogger(__name__)

T = TypeVar("T", str, bytes)

__all__ = ["StreamReader", "StreamWriter"]


class StreamReader(Generic[T]):
    """One output stream of a sandbox process (Modal's ``StreamReader``): lines as they come, or all of it.

    Example::

        p = sb.exec("bash", "-c", "echo one; echo two")
        assert [line for line in p.stdout] == ["one\\n", "two\\n"]
    """

    def __init__(self, file_descriptor: int, *, text: bool = True, start: Callable[[], None] | None = None,
                 discard: bool = False) -> None:
        self._fd = file_descriptor
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace") if text else None
        self._buffer: Any = "" if text else b""
        self._closed = False
        self._error: BaseException | None = None
        self._discard = discard  # stdout=StreamType.DEVNULL: nothing is kept
        self._cond = threading.Condition()
        self._start = start  # starts what feeds it, at its first use (the entrypoint's streams)

    @property
    def file_descriptor(self) -> int:
        """1 for stdout, 2 for stderr."""
        return self._fd

    # -- fed by the process's reader ------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._discard:
            return
        piece = self._decoder.decode(data) if self._decoder is not None else bytes(data)
        with self._cond:
            self._buffer += piece
            self._cond.notify_all()

    def _close(self, error: BaseException | None = None) -> None:
        with self._cond:
            if self._decoder is not None and not self._discard:
                self._buffer += self._decoder.decode(b"", final=True)
            self._closed = True
            self._error = error
            self._cond.notify_all()

    def _started(self) -> None:
        start, self._start = self._start, None
        if start is not None:
            start()

    # -- reading --------------------------------------------------------------

    @WithAio
    def read(self) -> T:
        """Everything the stream has left, once the process has closed it (waits for that)."""
        self._started()
        with self._cond:
            self._cond.wait_for(lambda: self._closed)
            data, self._buffer = self._buffer, self._buffer[:0]
        self._raise_if_failed()
        return data

    def __iter__(self) -> Iterator[T]:
        """Its lines (each with its newline; the last may have none) as they come."""
        self._started()
        newline: Any = "\n" if self._text else b"\n"
        while True:
            with self._cond:
                self._cond.wait_for(lambda: newline in self._buffer or self._closed)
                if newline in self._buffer:
                    line, self._buffer = self._buffer.split(newline, 1)
                    line += newline
                elif self._buffer:
                    line, self._buffer = self._buffer, self._buffer[:0]
                else:
                    line = None
            if line is None:
                self._raise_if_failed()
                return
            yield line

    def __aiter__(self) -> AsyncIterator[T]:
        return iterate_in_thread(lambda: iter(self))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def __repr__(self) -> str:
        return f"<nbmodal.StreamReader fd={self._fd}{' closed' if self._closed else ''}>"


class StreamWriter:
    """A sandbox process's stdin (Modal's ``StreamWriter``).

    Example::

        p = sb.exec("cat")
        p.stdin.write("hi\\n")
        p.stdin.write_eof()
        p.stdin.drain()
        assert p.stdout.read() == "hi\\n"
    """

    def __init__(self, send: Callable[[bytes], None], send_eof: Callable[[], None]) -> None:
        self._send = send
        self._send_eof = send_eof
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue ``data`` (``str`` is sent as UTF-8) for the process's stdin, in order."""
        if self._closed:
            raise ValueError("this stdin was closed with write_eof(): nothing more can be written to it")
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"StreamWriter.write takes bytes or str, not {type(data).__name__}")
        self._send(bytes(data))

    def write_eof(self) -> None:
        """Close the process's stdin once what was written before has reached it."""
        if not self._closed:
            self._closed = True
            self._send_eof()

    @WithAio
    def drain(self) -> None:
        """Modal flushes its buffer here; writes here go out in order as they are made, so nothing waits."""
        return None

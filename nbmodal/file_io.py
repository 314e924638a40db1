"""``nbmodal.file_io``: Modal's ``FileIO``, a file in a Sandbox's filesystem (``sb.open(path, mode)``).

The file is read from the sandbox when it is opened (modes ``r``, ``r+``, ``a``, ``a+``), changed here,
and written back whole by ``flush()`` and ``close()`` (and at the end of a ``with`` block); ``w`` and
``x`` start it empty. Modes are Python's: ``b`` for bytes, ``+`` to read and write, ``x`` fails if it
exists. Paths are the sandbox's own (relative ones from its working directory), and stay within its own
directories: see ``Sandbox.open``.

    with sb.open("notes.txt", "w") as f:
        f.write("hello")
    assert sb.open("notes.txt").read() == "hello"
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from nbmodal._aio import WithAio, call_in_thread

T = TypeVar("T", str, bytes)

__all__ = ["FileIO"]

_MODES = frozenset(a + b + c for a in "rwax" for b in ("", "+") for c in ("", "b")) | \
    frozenset(a + c + b for a in "rwax" for b in ("", "+") for c in ("", "b"))


class FileIO(Generic[T]):
    """A file of a Sandbox, opened with ``sb.open(path, mode)`` (Modal's ``FileIO``).

    Example::

        with sb.open("/sandbox/data.bin", "wb") as f:
            f.write(b"\\x00\\x01")
    """

    def __init__(self, path: str, mode: str, read: Callable[[], bytes | None], write: Callable[[bytes], None]) -> None:
        if mode not in _MODES:
            raise ValueError(f"invalid mode {mode!r} for a sandbox file: use r, w, a or x, with + and/or b")
        self.path = path
        self.mode = mode
        self._binary = "b" in mode
        self._readable = "r" in mode or "+" in mode
        self._writable = mode[0] in "wax" or "+" in mode
        self._write_back = write
        content = b""
        if mode[0] in "ra":
            existing = read()
            if existing is None:
                if mode[0] == "r":
                    raise FileNotFoundError(2, f"no such file in the sandbox: {path!r}", path)
            else:
                content = existing
        elif mode[0] == "x" and read() is not None:
            raise FileExistsError(17, f"the file exists in the sandbox: {path!r}", path)
        self._buffer = io.BytesIO(content)
        if mode[0] == "a":
            self._buffer.seek(0, io.SEEK_END)
        self._dirty = mode[0] in "wx"  # an empty new file exists once closed
        self._closed = False

    # -- reading ------------------------------------------------------------

    @WithAio
    def read(self, n: int | None = None) -> T:
        """Up to ``n`` bytes of it (decoded in a text mode: keep ``n`` off a character's middle), or the rest."""
        self._check(self._readable, "read")
        data = self._buffer.read(-1 if n is None else n)
        return self._out(data)

    @WithAio
    def readline(self) -> T:
        self._check(self._readable, "read")
        return self._out(self._buffer.readline())

    @WithAio
    def readlines(self) -> list[T]:
        self._check(self._readable, "read")
        return [self._out(line) for line in self._buffer.readlines()]

    def __iter__(self) -> Iterator[T]:
        return iter(self.readlines())

    # -- writing ------------------------------------------------------------

    @WithAio
    def write(self, data: T) -> int:
        """Write ``data`` (``str`` in a text mode, ``bytes`` in a ``b`` mode) at the current position."""
        self._check(self._writable, "write")
        if self._binary != isinstance(data, (bytes, bytearray, memoryview)):
            want = "bytes" if self._binary else "str"
            raise TypeError(f"write() of a sandbox file opened with mode {self.mode!r} takes {want}, "
                            f"not {type(data).__name__}")
        raw = bytes(data) if self._binary else str(data).encode("utf-8")  # type: ignore[arg-type]
        if self.mode[0] == "a":
            self._buffer.seek(0, io.SEEK_END)  # appends always go to the end, as in Python
        self._buffer.write(raw)
        self._dirty = True
        return len(data)

    @WithAio
    def flush(self) -> None:
        """Write the file back to the sandbox, if it changed."""
        self._check(True, "flush")
        if self._writable and self._dirty:
            self._write_back(self._buffer.getvalue())
            self._dirty = False

    @WithAio
    def seek(self, offset: int, whence: int = 0) -> int:
        self._check(True, "seek")
        return self._buffer.seek(offset, whence)

    def tell(self) -> int:
        self._check(True, "tell")
        return self._buffer.tell()

    @WithAio
    def close(self) -> None:
        """Write it back (if it changed) and close it."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FileIO[T]:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> FileIO[T]:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await call_in_thread(self.close)

    def _out(self, data: bytes) -> Any:
        return data if self._binary else data.decode("utf-8")

    def _check(self, allowed: bool, what: str) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on a closed sandbox file ({self.path!r})")
        if not allowed:
            raise io.UnsupportedOperation(f"can't {what} sandbox file {self.path!r} opened with mode {self.mode!r}")

    def __repr__(self) -> str:
        return f"<nbmodal.FileIO {self.path!r} mode={self.mode!r}{' closed' if self._closed else ''}>"

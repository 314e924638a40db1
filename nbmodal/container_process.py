"""``nbmodal.container_process``: Modal's ``ContainerProcess``, a process running inside a Sandbox.

``sb.exec(...)`` returns one. Its output is read by a thread as it comes (so a process that writes a
lot never blocks on a reader that isn't there) into ``stdout`` and ``stderr``, its ``StreamReader``s;
``stdin`` is its ``StreamWriter``. ``wait()`` returns its exit code, ``poll()`` and ``returncode`` say
it without waiting (None while it runs).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Generic, TypeVar

from nbmodal._aio import WithAio
from nbmodal._runtime.container_exec import STDERR, ExecProcess
from nbmodal.io_streams import StreamReader, StreamWriter

log = logging.getLogger(__name__)

T = TypeVar("T", str, bytes)

__all__ = ["ContainerProcess"]


class ContainerProcess(Generic[T]):
    """A process started in a Sandbox with ``sb.exec(...)`` (Modal's ``ContainerProcess``).

    Example::

        p = sb.exec("python", "-c", "import sys; print(sys.stdin.read().upper())")
        p.stdin.write("hello")
        p.stdin.write_eof()
        assert p.wait() == 0 and p.stdout.read() == "HELLO\\n"
    """

    def __init__(self, process: ExecProcess, *, text: bool = True, discard: tuple[bool, bool] = (False, False),
                 echo: Any = None) -> None:
        self._process = process
        self.stdout: StreamReader = StreamReader(1, text=text, discard=discard[0])
        self.stderr: StreamReader = StreamReader(2, text=text, discard=discard[1])
        self.stdin = StreamWriter(process.write, process.write_eof)
        self._echo = echo  # StreamType.STDOUT: (stdout, stderr) files its output is written to as it comes
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"nbmodal-exec-{process.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        error: BaseException | None = None
        try:
            for stream, data in self._process.output():
                if self._echo is not None:
                    target = self._echo[1] if stream == STDERR else self._echo[0]
                    target.write(data.decode("utf-8", "replace"))
                    target.flush()
                (self.stderr if stream == STDERR else self.stdout)._feed(data)
        except BaseException as exc:  # the agent went away: readers and waiters hear it
            error = exc
            log.info("a sandbox process's output ended early: %s", exc)
        finally:
            self._error = error
            self.stdout._close(error)
            self.stderr._close(error)
            self._done.set()

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has ended (128 + N when killed by signal N), else None."""
        return self._process.returncode if self._done.is_set() else None

    def poll(self) -> int | None:
        """Its exit code if it has ended, else None (never waits)."""
        return self.returncode

    @WithAio
    def wait(self) -> int:
        """Wait for it to end; its exit code. Its output stays readable from ``stdout``/``stderr``."""
        self._done.wait()
        if self._error is not None and self._process.exit is None:
            raise self._error
        exit_ = self._process.exit
        assert exit_ is not None
        if exit_.error:
            log.info("sandbox process %s: %s", self._process.argv, exit_.error)
        return exit_.code

    @property
    def error(self) -> str:
        """Why it ended without running as asked (no such command, a timeout, its sandbox ended), or ""."""
        exit_ = self._process.exit
        return exit_.error if exit_ is not None and self._done.is_set() else ""

    def attach(self) -> None:
        """Modal's interactive PTY attach: use ``nbmodal shell SANDBOX_CONTAINER_ID`` in a terminal here."""
        from nbmodal.exceptions import not_available

        raise not_available("ContainerProcess.attach()", "run `nbmodal shell CONTAINER_ID` (the sandbox's "
                                                         "container, from `nbmodal container list`) in a terminal")

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<nbmodal.ContainerProcess {' '.join(self._process.argv)!r} {state}>"

"""This terminal joined to a process inside a container: ``nbmodal container exec`` and ``nbmodal shell``.

With a PTY the local terminal goes into raw mode, so every key (Ctrl-C included) travels to the remote
terminal, which turns it into a signal for its foreground job as a local one would; window size changes
(SIGWINCH) follow; the terminal is restored however the process ends. Without a PTY stdout and stderr
stay apart, stdin is forwarded until its end, and Ctrl-C sends SIGINT to the process (twice: stop
following it, which kills it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator

from nbmodal._runtime.container_exec import STDERR, ExecExit, ExecProcess

_CHUNK = 1 << 16


def window_size() -> tuple[int, int]:
    """This terminal's (rows, cols) as it is now; 24x80 when it isn't one.

    Asked of the terminal itself: $LINES/$COLUMNS (which shutil prefers) are a shell's stale copy.
    """
    for stream in (sys.stdin, sys.stdout):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (AttributeError, ValueError, OSError):
            continue
        return size.lines, size.columns
    return 24, 80


def drive(process: ExecProcess, pty: bool) -> ExecExit:
    """Join this terminal to ``process`` until it exits; returns how it ended."""
    stdin_fd = sys.stdin.fileno() if sys.stdin is not None else -1
    _forward_stdin(process, stdin_fd)
    if pty:
        with _raw_terminal(stdin_fd), _resizes(process):
            return _copy_output(process)
    with _interrupts_to(process):
        return _copy_output(process)


def _copy_output(process: ExecProcess) -> ExecExit:
    sys.stdout.flush()
    for stream, data in process.output():
        _write_all(2 if stream == STDERR else 1, data)
    return process.wait()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _forward_stdin(process: ExecProcess, fd: int) -> None:
    """Stdin to the process on a thread of its own (it may block for ever on a terminal: a daemon)."""
    if fd < 0:
        process.write_eof()
        return

    def pump() -> None:
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except OSError:
                data = b""
            if not data:
                process.write_eof()
                return
            process.write(data)

    threading.Thread(target=pump, name="exec-stdin", daemon=True).start()


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on the local terminal (keys go to the remote one as typed); restored on the way out."""
    if fd < 0 or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # not the default TCSAFLUSH: keys typed already must not be lost
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _resizes(process: ExecProcess) -> Iterator[None]:
    """The remote PTY follows this terminal's size."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_resize(signum, frame) -> None:
        process.resize(*window_size())

    previous = signal.signal(signal.SIGWINCH, on_resize)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


@contextlib.contextmanager
def _interrupts_to(process: ExecProcess) -> Iterator[None]:
    """Ctrl-C: SIGINT to the process; a second one stops following it (which kills it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def on_interrupt(signum, frame) -> None:
        nonlocal count
        count += 1
        if count == 1:
            process.signal(signal.SIGINT)
        else:
            process.close()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

"""The container's stdin, answered from the notebook: pdb's prompt, ``input()``, ``sys.stdin``.

A container has no terminal. Its ``sys.stdin`` and ``input()`` are replaced here: a read sends an
``InputRequest`` to the agent (after the output printed so far, so a prompt never overtakes it) and
waits for the ``InputAnswer`` frame the agent forwards from whoever answered (the cell's client, or
``nbmodal attach``). So ``breakpoint()`` opens a pdb session whose prompt is answered in the
notebook, and a run with no client attached waits (state ``WAITING_FOR_DEBUGGER``) until one is.

One read is outstanding at a time: code on several threads that reads stdin at once (two map inputs
of an ``@nbmodal.concurrent`` function at a breakpoint) is answered one pdb session after another
(``nbmodal_wire/debugger_floor.py``). The wait is
interruptible: a cancel (``KeyboardInterrupt``) or the run's timeout ends it as they end any code.
"""

from __future__ import annotations

import builtins
import io
import linecache
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from nbmodal_wire import pb
from nbmodal_wire.debugger_floor import DebuggerFloor
from remote_agent.worker import context

log = logging.getLogger(__name__)

_original_input = builtins.input
# The worker's own modules: pdb steps over their frames.
_WORKER_MODULES = ("remote_agent.*", "nbmodal_wire.*")


class StdinChannel:
    """Asks the agent for lines of stdin and hands the answers to the thread that asked."""

    def __init__(self, send: Callable[[pb.FromContainer], None], sync_output: Callable[[], None]) -> None:
        self._send = send
        self._sync_output = sync_output
        self._floor = DebuggerFloor()  # threads at a breakpoint at once: one pdb session after another
        self._answers: queue.SimpleQueue[pb.InputAnswer] = queue.SimpleQueue()
        self._asked = False  # since the last new_run(): a run that read no stdin has no floor to free

    def on_answer(self, message: pb.ToContainer) -> None:
        """The inbox's handler for ``input_answer`` frames (called on the thread that read the frame)."""
        self._answers.put(message.input_answer)

    def ask(self, prompt: str = "", debugger: bool = False) -> str | None:
        """One line from whoever answers, without its newline; None at end of input."""
        me = threading.get_ident()
        self._asked = True  # before and after take(): a floor taken as a new run begins is freed by the next
        self._floor.take(me)
        self._asked = True
        try:
            while True:  # an answer to a request that was withdrawn (interrupted) is not this one's
                try:
                    self._answers.get_nowait()
                except queue.Empty:
                    break
            index = context.map_input_index()
            self._sync_output()
            self._send(pb.FromContainer(input_request=pb.InputRequest(
                prompt=prompt, debugger=debugger, input_index=-1 if index is None else index)))
            try:
                answer = self._answers.get()  # a signal handler's exception (cancel, timeout) ends the wait
            except BaseException:
                self._send(pb.FromContainer(input_request=pb.InputRequest(withdrawn=True)))
                raise
        except BaseException:
            self._floor.release(me)
            raise
        line = None if answer.eof else answer.text
        if debugger:
            self._floor.answered(me, line)  # the session keeps the floor until `c`
        else:
            self._floor.release(me)
        return line

    def new_run(self) -> None:
        """A run begins: no thread of an earlier one holds the floor any more."""
        if self._asked:
            self._asked = False
            self._floor.release_all()


class RemoteStdin(io.TextIOBase):
    """``sys.stdin`` of a container: each line read is asked for through a ``StdinChannel``."""

    def __init__(self, channel: StdinChannel) -> None:
        super().__init__()
        self._channel = channel
        self._eof = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def name(self) -> str:
        return "<stdin>"

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # No descriptor: input() then writes its prompt to sys.stdout and calls readline(), and a child
        # process started by the user's code doesn't inherit a stdin that would steal the answers.
        raise io.UnsupportedOperation("a container's stdin is answered from the notebook; it has no descriptor")

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if self._eof:
            return ""
        line = self._channel.ask("", debugger=_called_by_debugger(sys._getframe(1)))
        if line is None:
            self._eof = True  # as with a pipe, every read after end of input returns ""
            return ""
        return line + "\n"

    def read(self, size: int | None = -1) -> str:
        """Lines until end of input (or, with ``size``, at least that many characters' worth of lines)."""
        parts: list[str] = []
        while size is None or size < 0 or sum(map(len, parts)) < size:
            line = self.readline()
            if not line:
                break
            parts.append(line)
        return "".join(parts)


def install(channel: StdinChannel) -> RemoteStdin:
    """Make ``sys.stdin`` and ``input()`` ask the notebook, and leave ``breakpoint()`` enabled."""
    stdin = RemoteStdin(channel)
    sys.stdin = stdin

    def remote_input(prompt: object = "") -> str:
        if sys.stdin is not stdin:  # the user's code put its own stdin in place: read that, as input() would
            return _original_input(prompt)
        line = channel.ask(str(prompt), debugger=_called_by_debugger(sys._getframe(1)))
        if line is None:
            raise EOFError
        return line

    remote_input.__doc__ = _original_input.__doc__
    builtins.input = remote_input
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        # A host that disables breakpoints for its own processes must not disable them in containers.
        del os.environ["PYTHONBREAKPOINT"]
    sys.breakpointhook = _breakpoint
    return stdin


def _breakpoint(*args: Any, **kwargs: Any) -> Any:
    """``breakpoint()`` in a container: pdb, stepping over the worker's own frames, leaving the run's
    interrupt handling alone (a cancel still raises KeyboardInterrupt in the code)."""
    if os.environ.get("PYTHONBREAKPOINT", "") not in ("", "pdb.set_trace"):
        return sys.__breakpointhook__(*args, **kwargs)  # another debugger (or "0"), as the variable asks
    import pdb

    debugger = pdb.Pdb(nosigint=True, skip=list(_WORKER_MODULES))
    if kwargs.get("header") is not None:
        debugger.message(kwargs["header"])
    debugger.set_trace(sys._getframe(1))
    return None


def end_debugging() -> None:
    """The run's code has returned: a pdb session still stepping (``n`` past its last line) ends here,
    rather than stopping in the worker's code or in the next run."""
    bdb = sys.modules.get("bdb")
    if bdb is not None and isinstance(getattr(sys.gettrace(), "__self__", None), bdb.Bdb):
        sys.settrace(None)


def _called_by_debugger(frame: FrameType | None, depth: int = 4) -> bool:
    """Whether pdb's command loop asks for this line (cmd.Cmd.cmdloop, called by pdb, calls input())."""
    pdb = sys.modules.get("pdb")
    if pdb is None:
        return False
    for _ in range(depth):  # by code object, not f_locals: reading those can disturb a traced frame
        if frame is None:
            return False
        if frame.f_code.co_filename == pdb.__file__:
            return True
        frame = frame.f_back
    return False


def explain_debugger_quit(exc: BaseException) -> None:
    """pdb's ``q`` ends the run with a ``BdbQuit`` that says nothing; give it words."""
    bdb = sys.modules.get("bdb")
    if bdb is not None and isinstance(exc, bdb.BdbQuit) and not exc.args:
        exc.args = ("the debugger was quit (q or end of input), so the run stopped at its breakpoint; "
                    "`c` (continue) lets a run go on",)


def remember_sources(sources: Mapping[str, str]) -> None:
    """Put the text of files that came with the run (its code's, from the notebook's machine) where pdb
    and tracebacks look for lines, unless the file is on this host."""
    for filename, text in sources.items():
        if not os.path.exists(filename):
            # No mtime: linecache.checkcache keeps the entry, as for source a loader provided.
            linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)

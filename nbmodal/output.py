"""Where a run's output goes: the notebook cell, or a terminal.

A run's output arrives here as text (``run_events.RunEvents`` decodes the
remote bytes of fd 1 and 2, once, per stream) and is written to this
process's ``sys.stdout`` / ``sys.stderr`` (in a kernel, the cell's streams).
A line redrawn with carriage returns (tqdm) is forwarded at most every
``REDRAW_INTERVAL_S``, so a progress bar stays one updating line rather than
thousands of saved states.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

from nbmodal_wire import pb

REDRAW_INTERVAL_S = 0.1


class OutputSink(Protocol):
    """Where a run's events go, output already decoded to text (by ``run_events.RunEvents``).

    A sink may also define ``started(started: pb.RunStarted)``,
    ``input_started(index: int)`` (a map batch's next input begins),
    ``finished(finished: pb.RunFinished)``, ``input_request(seq, request)`` (the run waits for stdin
    that this follower doesn't answer) and ``before_prompt()`` (this process is about to ask for the
    answer: show what came before); those are called only when present.
    """

    def output(self, stream: int, text: str) -> None: ...
    def display(self, data: dict, metadata: dict, execute_result: bool) -> None: ...
    def notice(self, text: str) -> None: ...
    def item(self, item: pb.Item) -> None: ...
    def close(self) -> None: ...


class LineRedraws:
    """Collapses carriage-return redraws of a line, keeping what a terminal would show."""

    def __init__(self, write, interval: float = REDRAW_INTERVAL_S) -> None:
        self._write = write
        self._interval = interval
        self._tail = ""     # the current, unterminated line as received
        self._shown = ""    # what of that line has been written out
        self._last_redraw = float("-inf")  # the first redraw always shows

    def feed(self, text: str) -> None:
        text = self._tail + text.replace("\r\n", "\n")
        *lines, self._tail = text.split("\n")
        out = []
        for line in lines:
            out.append(self._finish_line(visible_line(line)))
        if out:
            self._shown = ""
        visible = visible_line(self._tail)
        if visible.startswith(self._shown) and "\r" not in self._tail:
            # Plain text without a newline yet (print(..., end="")): pass it on.
            out.append(visible[len(self._shown):])
            self._shown = visible
        elif visible != self._shown and time.monotonic() - self._last_redraw >= self._interval:
            out.append("\r" + visible)
            self._shown = visible
            self._last_redraw = time.monotonic()
        if out:
            self._write("".join(out))

    def flush(self) -> None:
        """Show the current state of an unfinished line."""
        visible = visible_line(self._tail)
        if visible != self._shown:
            self._write(visible[len(self._shown):] if visible.startswith(self._shown) else "\r" + visible)
            self._shown = visible

    def _finish_line(self, visible: str) -> str:
        shown, self._shown = self._shown, ""
        if visible.startswith(shown):
            return visible[len(shown):] + "\n"
        return "\r" + visible + "\n"


def visible_line(line: str) -> str:
    """What remains of a line after its carriage-return redraws."""
    if "\r" not in line:
        return line
    for segment in reversed(line.split("\r")):
        if segment:
            return segment
    return ""


class StreamSink:
    """Writes output to this process's stdout/stderr; displays as text or rich output."""

    def __init__(self, rich: bool = False) -> None:
        self._rich = rich
        # A stream's line state, made at its first output: most warm runs print nothing.
        self._lines: dict[int, LineRedraws] = {}
        self.execute_result: dict | None = None

    @staticmethod
    def _writer(stream: int):
        def write(text: str) -> None:
            target = sys.stdout if stream == pb.STDOUT else sys.stderr
            target.write(text)
            target.flush()
        return write

    def output(self, stream: int, text: str) -> None:
        if text:
            lines = self._lines.get(stream)
            if lines is None:
                lines = self._lines[stream] = LineRedraws(self._writer(stream))
            lines.feed(text)

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        if execute_result:
            self.execute_result = data
            return
        self._flush_lines()
        if self._rich:
            from IPython.display import publish_display_data

            publish_display_data(data=data, metadata=metadata)
        else:
            print(data.get("text/plain", ""), flush=True)

    def notice(self, text: str) -> None:
        self._flush_lines()
        sys.stderr.write(f"[nbmodal] {text}\n")
        sys.stderr.flush()

    def item(self, item: pb.Item) -> None:
        pass  # a generator's items are consumed by Function.remote_gen, not shown

    def close(self) -> None:
        self._flush_lines()

    def before_prompt(self) -> None:
        self._flush_lines()

    def _flush_lines(self) -> None:
        if not self._lines:
            return  # nothing was printed (most warm runs)
        for stream in (pb.STDOUT, pb.STDERR):
            lines = self._lines.get(stream)
            if lines is not None:
                lines.flush()


def default_sink(shell: Any = None) -> StreamSink:
    """Rich displays inside a Jupyter kernel, plain text elsewhere (``shell``: the running IPython shell,
    when the caller has it at hand)."""
    return StreamSink(rich=in_kernel(shell))


def in_kernel(shell: Any = None) -> bool:
    """Whether this runs in a Jupyter kernel (``shell``, else the running IPython shell, has one)."""
    if shell is None:
        shell = ipython_shell()
    return shell is not None and getattr(shell, "kernel", None) is not None


def ipython_shell() -> Any:
    """The running IPython shell, if any (without importing IPython for scripts)."""
    if "IPython" not in sys.modules:
        return None
    # From its own module: ``IPython.get_ipython`` is a lazy attribute that imports it again on every access.
    from IPython.core.getipython import get_ipython

    return get_ipython()


class DisplayedValue:
    """A cell's last expression, as rendered remotely; IPython shows it as ``Out[n]``."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return self._data

    def __repr__(self) -> str:
        return self._data.get("text/plain", "")

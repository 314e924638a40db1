"""``!cmd``, ``x = !cmd`` and ``%%bash`` in a ``%%remote`` cell, run in the container.

The notebook rewrites those lines into calls of this module (``nbmodal/shell_escapes.py``), which the
worker makes available to cells as the builtin ``_nbmodal_shell``. As in IPython, ``{expr}`` and
``$name`` in a command line are filled in from the calling code's variables (the notebook's
captured ones and the cell's own), and a command line that doesn't format is run as written (so
``awk '{print $1}'`` works); a ``%%bash`` body is run as written. Commands run with ``/bin/sh`` (or the
cell magic's interpreter) with fds 1 and 2 inherited, so their output streams into the cell live.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from string import Formatter
from types import FrameType
from typing import Any

from nbmodal_wire.shell_lines import SList, command_fields


def system(command: str, references: Callable[[], Any] | None = None) -> None:
    """``!command``: run it, its output streaming into the cell; its status is ``_exit_code``.

    ``references`` is never called: it names the variables the command line mentions, so that the
    notebook sends them with the cell.
    """
    frame = sys._getframe(1)
    _flush()
    status = subprocess.call(expand(command, frame), shell=True, stdin=subprocess.DEVNULL)
    frame.f_globals["_exit_code"] = status


def getoutput(command: str, references: Callable[[], Any] | None = None) -> SList:
    """``x = !command``: its output (stdout and stderr, as IPython captures them) as a list of lines."""
    frame = sys._getframe(1)
    _flush()
    done = subprocess.run(expand(command, frame), shell=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    frame.f_globals["_exit_code"] = done.returncode
    return SList(done.stdout.decode("utf-8", errors="replace").splitlines())


def cell(interpreter: str, script: str) -> None:
    """``%%bash`` (``%%sh``, ``%%script CMD``): ``script`` on the interpreter's stdin, as IPython runs it.

    A non-zero exit raises ``CalledProcessError``, as IPython's ``%%bash`` does, so Run All stops there.
    """
    _flush()
    done = subprocess.run(shlex.split(interpreter), input=script.encode())
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, interpreter)


def expand(command: str, frame: FrameType) -> str:
    """``{expr}`` and ``$name`` filled in from ``frame``'s variables; ``command`` as written if any fails."""
    namespace = {**frame.f_globals, **frame.f_locals}
    try:
        return "".join(_format(command, namespace))
    except Exception:  # as in IPython: shell syntax that looks like a field ({print $1}, ${HOME}) stays
        return command


def _format(command: str, namespace: Mapping[str, Any]) -> Iterator[str]:
    formatter = Formatter()
    for literal, field, spec, conversion in command_fields(command):
        yield literal
        if field is not None:
            value = eval(f"{field}:{spec}" if spec else field, dict(namespace))  # slices: {x[1:3]}
            yield formatter.format_field(formatter.convert_field(value, conversion), "")


def _flush() -> None:
    """What the cell printed so far comes before the command's output."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass

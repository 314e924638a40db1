"""What a warm ``%%remote`` cell reuses from the cells before it.

A notebook runs the same cells, with the same magic lines, again and again. What follows only from a
cell's source, its options or the agent it runs on is worked out once and kept here:

- ``prepare_cell``: the cell's label, its shell lines rewritten (``shell_escapes``) and whether it parses,
  by source;
- ``cell_spec``: the ``pb.ContainerSpec`` of a line's ``gpu=``, ``volumes=``, ``cpu=`` and ``memory=``;
- the resolved ``RunTarget`` (client, Python check, blob transfer) of a connection, as long as placement
  still picks that connection and its client is still the live one: ``invocation.resolve_target`` keeps
  it (``reuse_target``), for ``f.remote()`` too.

What a cell reads from the notebook (the values), where placement sends it (the hosts file, a session's
host) and whether the agent still runs are looked at anew every time; so is everything about a run
itself (its id, the working directory, the request). Every cache is bounded.

Example::

    prepared = prepare_cell("!ls {path}\\nx = 1")
    prepared.label   # '!ls {path}'
    prepared.code    # "_nbmodal_shell.system('ls {path}', lambda: (path,))\\nx = 1"
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

from nbmodal._runtime.invocation import CELL_FIRST_LINE, cell_label, container_spec
from nbmodal._runtime.invocation import forget_targets as _forget_targets
from nbmodal._runtime.resource_limits import CpuRequest, MemoryRequest
from nbmodal.shell_escapes import transform_cell
from nbmodal_wire import pb
from nbmodal_wire.cellcode import parse_cell

# Sources kept: the most recent distinct ones, each at most this long (a cell holding pasted data is not kept).
MAX_CACHED_SOURCE = 256 * 1024
_MAX_SOURCES = 128
_MAX_SPECS = 64


@dataclass(frozen=True)
class PreparedCell:
    """What follows from a cell's source alone."""

    label: str          # its first line of code: how its run is named in lists
    code: str           # with ``!cmd`` / ``%%bash`` lines as the calls the container runs
    parses: bool        # False: ``check_syntax`` raises the SyntaxError, named after the running cell

    def check_syntax(self, filename: str) -> None:
        """Raise the cell's SyntaxError (with ``filename`` and the notebook's line numbers), if it has one."""
        if not self.parses:
            parse_cell(self.code, filename, first_line=CELL_FIRST_LINE)


def prepare_cell(cell: str) -> PreparedCell:
    """The label, rewritten code and syntax check of a cell's source, worked out once per source (up to
    ``MAX_CACHED_SOURCE`` characters: a larger one is prepared each time rather than kept).

    A cell the rewrite refuses (a line magic) raises here every time: errors are not kept.
    """
    return _prepare_cached(cell) if len(cell) <= MAX_CACHED_SOURCE else _prepare(cell)


def _prepare(cell: str) -> PreparedCell:
    code = transform_cell(cell)
    try:
        parse_cell(code, "<remote cell>", first_line=CELL_FIRST_LINE)
    except SyntaxError:
        return PreparedCell(cell_label(cell), code, parses=False)
    return PreparedCell(cell_label(cell), code, parses=True)


_prepare_cached = functools.lru_cache(maxsize=_MAX_SOURCES)(_prepare)

_specs: dict[tuple, pb.ContainerSpec] = {}


def cell_spec(gpu: str, volumes: dict[str, str], cpu: CpuRequest, memory: MemoryRequest) -> pb.ContainerSpec:
    """``container_spec`` of a line's options, built once per distinct options.

    The message is shared: callers copy it (a request's ``spec=`` does) and never change it.
    """
    key = (gpu, tuple(sorted(volumes.items())), cpu, memory)
    spec = _specs.get(key)
    if spec is None:
        if len(_specs) >= _MAX_SPECS:
            _specs.clear()
        spec = _specs[key] = container_spec(gpu, volumes, cpu, memory)
    return spec


def forget_targets() -> None:
    """Drop every kept target (``invocation.reuse_target``) and spec: the next cells resolve theirs anew."""
    _forget_targets()
    _specs.clear()


def current_cell_number(shell: Any) -> int:
    """The In[n] of the running cell (IPython versions differ on when they count).

    The cell's code was compiled under a name IPython maps to its number: the nearest caller whose code
    has such a name is the running cell. Without one (the cell was run some other way), the highest
    number compiled so far.
    """
    numbers = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if not numbers:
        return shell.execution_count
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        number = numbers.get(frame.f_code.co_filename)
        if number is not None:
            return number
        frame = frame.f_back
    return max(numbers.values())

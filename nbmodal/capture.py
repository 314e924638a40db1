"""Which notebook values a cell needs, and packing them for the wire.

Capture errors come first: a value that can't be sent stops the cell before
anything runs remotely, naming the variable, its type and what to do instead.
"""

from __future__ import annotations

import functools
import io
import socket
import threading
import types
from collections.abc import Callable, Container, Mapping
from typing import Any

from nbmodal import serialization
from nbmodal.exceptions import CaptureError
from nbmodal_wire.cellcode import names_read

# IPython's own bookkeeping names are never shipped.
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___",
                            "_i", "_ii", "_iii", "_ih", "_oh", "_dh"})


def select_inputs(code: str, namespace: Mapping[str, Any], skip: Container[str] = ()) -> dict[str, Any]:
    """The notebook values the cell reads (names it doesn't have stay unbound, as locally).

    Only which names is worked out once per source (``capturable_names``); their values are read anew
    from ``namespace`` every time."""
    return {name: namespace[name] for name in capturable_names(code) if name not in skip and name in namespace}


def capturable_names(code: str) -> tuple[str, ...]:
    """The names ``code`` reads that a notebook may hold for it, in order of first use: what it reads
    (``names_read``), less IPython's own bookkeeping. Kept by source (the recent ones, up to 256 KiB
    each): a warm cell parses nothing.

    Example::

        capturable_names("y = f(x, _i3, In)")  # ('f', 'x')
    """
    return _names_cached(code) if len(code) <= _MAX_CACHED_SOURCE else _names(code)


def _names(code: str) -> tuple[str, ...]:
    return tuple(name for name in names_read(code) if name not in _IPYTHON_NAMES and not _history_name(name))


_MAX_CACHED_SOURCE = 256 * 1024
_names_cached = functools.lru_cache(maxsize=128)(_names)


def _history_name(name: str) -> bool:
    """IPython's input/output history (_i3, _3)."""
    return name.startswith("_i") and name[2:].isdigit() or name.startswith("_") and name[1:].isdigit()


# The packed empty dict (inline bytes, no blob), once packed: most warm cells read no notebook value.
_empty_packed: tuple[bytes, str] | None = None


def pack_inputs(inputs: dict[str, Any], pack: Callable[[Any], tuple[bytes, str]]) -> tuple[bytes, str]:
    """Pickle all inputs at once (shared references stay shared), or name the culprit.

    ``pack`` pickles for the wire: (inline payload, "") or (b"", blob id).
    """
    global _empty_packed
    if not inputs and _empty_packed is not None:
        return _empty_packed  # a cell that reads nothing: the same few inline bytes every time
    try:
        packed = pack(inputs)
        if not inputs and not packed[1]:
            _empty_packed = packed
        return packed
    except Exception as whole_error:
        for name, value in inputs.items():
            try:
                serialization.dumps(value)
            except Exception as exc:
                raise capture_error(name, value, exc) from None
        raise whole_error  # not one value's fault (e.g. the upload failed)


def capture_error(name: str, value: Any, exc: BaseException) -> CaptureError:
    kind = type(value)
    type_name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return CaptureError(
        f"can't send `{name}` ({type_name}) to the remote cell: {exc}. {_hint(name, value)} "
        "Nothing ran remotely.")


def _hint(name: str, value: Any) -> str:
    if isinstance(value, io.IOBase):
        return f"Open the file inside the cell instead (send its path: `{name}.name`)."
    if isinstance(value, types.GeneratorType):
        return f"Make it a list first (`{name} = list({name})`) or create the generator inside the cell."
    if isinstance(value, socket.socket):
        return "Open the connection inside the cell instead."
    if isinstance(value, (type(threading.Lock()), type(threading.RLock()), threading.Condition,
                          threading.Event, threading.Semaphore)):
        return "Create it inside the cell: a lock only means something within one process."
    if isinstance(value, threading.Thread):
        return "Threads can't move between processes; start it inside the cell."
    return ("Create it inside the cell, or turn it into plain data (numbers, strings, lists, dicts, "
            "arrays) before the cell.")

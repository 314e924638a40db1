"""The source text of code that travels by value, so that pdb shows its lines on another machine.

A function defined in a notebook cell or a script travels pickled by value; on an SSH host its file
(``/tmp/ipykernel_…/….py``, the script) isn't there, so pdb could say where it stopped but not show the
line, and ``l`` would list nothing. The run carries the text of those files (``RunRequest.debug_sources``)
and the container puts it in its ``linecache``. Installed packages and the standard library are left
out: the host has its own copy.

    request.debug_sources.update(debug_sources(train))
"""

from __future__ import annotations

import functools
import inspect
import linecache
import os
import sys
import sysconfig
from collections.abc import Iterator
from typing import Any

MAX_FILE_CHARS = 512 * 1024
MAX_TOTAL_CHARS = 2 * 1024 * 1024
_DEPTH = 3  # how far into a callable's attributes (a class method's call object holds its class)


def debug_sources(function: Any) -> dict[str, str]:
    """{file name: its text} for the files ``function``'s code (a class's methods too) comes from."""
    sources: dict[str, str] = {}
    total = 0
    for filename in dict.fromkeys(_code_files(function, _DEPTH, set())):
        if _installed(filename):
            continue
        text = "".join(linecache.getlines(filename))
        if not text or len(text) > MAX_FILE_CHARS or total + len(text) > MAX_TOTAL_CHARS:
            continue
        sources[filename] = text
        total += len(text)
    return sources


def _code_files(obj: Any, depth: int, seen: set[int]) -> Iterator[str]:
    if depth < 0 or id(obj) in seen:
        return
    seen.add(id(obj))
    code = getattr(obj, "__code__", None)
    if code is not None and hasattr(code, "co_filename"):
        yield code.co_filename
    for attribute in ("__wrapped__", "__func__"):
        inner = getattr(obj, attribute, None)
        if inner is not None:
            yield from _code_files(inner, depth - 1, seen)
    if isinstance(obj, functools.partial):  # a class method's call: partial(call_method, the class, …)
        for inner in (obj.func, *obj.args):
            if inspect.isclass(inner) or inspect.isroutine(inner):
                yield from _code_files(inner, depth - 1, seen)
        return
    if inspect.isclass(obj):
        if obj.__module__ in ("builtins",):
            return
        for value in vars(obj).values():
            if inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod, property)):
                yield from _code_files(getattr(value, "fget", value), depth - 1, seen)
    elif not inspect.isroutine(obj) and hasattr(obj, "__dict__") and not inspect.ismodule(obj):
        for value in vars(obj).values():  # a call object: the class or function it calls
            if inspect.isclass(value) or inspect.isroutine(value):
                yield from _code_files(value, depth - 1, seen)


def _installed(filename: str) -> bool:
    """A file of the standard library, an installed package or nbmodal itself (the host has those)."""
    if not os.path.isabs(filename):
        return False  # <ipython-input-…>: a cell IPython keeps in linecache
    roots = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update({sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    return any(filename.startswith(root + os.sep) for root in roots if root)

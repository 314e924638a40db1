"""How notebook values travel: cloudpickle, with the notebook's own modules by value.

Functions and classes defined in the notebook travel by value (cloudpickle
does that for ``__main__``). Those imported from the user's *local* modules
(files beside the notebook, not installed packages) travel by value too, and a
local module object itself travels as its source. Installed modules travel by
name and are imported remotely.
"""

from __future__ import annotations

import functools
import io
import linecache
import os
import site
import sys
import sysconfig
import types
from typing import Any

import cloudpickle

from remote_agent.worker.modules import code_with_source, load_module_from_source

PICKLE_PROTOCOL = 5


def dumps(obj: Any, buffer_callback=None) -> bytes:
    """Pickle ``obj``; with ``buffer_callback``, large buffers (arrays) are handed over out of band."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=PICKLE_PROTOCOL, buffer_callback=buffer_callback).dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return cloudpickle.loads(data)


class _Pickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType):
            return _reduce_code(obj)
        if isinstance(obj, types.ModuleType):
            if is_local_module(obj.__name__):
                return load_module_from_source, _module_source(obj)
        elif isinstance(obj, (types.FunctionType, type)):
            module_name = getattr(obj, "__module__", None)
            if module_name and is_local_module(module_name):
                _register_by_value(module_name)
        return super().reducer_override(obj)


def _reduce_code(code: types.CodeType) -> tuple:
    """cloudpickle's code reduction, keeping the file name so remote tracebacks
    point at the notebook cell; a cell's source (which exists only in this
    kernel's linecache) travels along so tracebacks can show its lines."""
    constructor, args = cloudpickle.cloudpickle._code_reduce(code)
    args = tuple(code.co_filename if arg == "<dynamic-code>" else arg for arg in args)
    filename = code.co_filename
    if filename in linecache.cache and not os.path.exists(filename):
        return code_with_source, (filename, linecache.getlines(filename), args)
    return constructor, args


@functools.cache
def _register_by_value(module_name: str) -> None:
    cloudpickle.register_pickle_by_value(sys.modules[module_name])


def is_local_module(module_name: str) -> bool:
    """True for the user's own modules: a file not under any install location."""
    if module_name == "__main__" or module_name.split(".")[0] in ("nbmodal", "remote_agent", "nbmodal_wire"):
        return False
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if not filename:
        return False
    return _is_local_file(filename)


@functools.lru_cache(maxsize=4096)
def _is_local_file(filename: str) -> bool:
    # Cached by the module's file name: resolving it (a dozen lstat calls) on every pickled function
    # was a tenth of a warm call's client-side time.
    path = os.path.realpath(filename)
    return not any(path.startswith(root + os.sep) for root in _install_roots())


@functools.lru_cache(maxsize=1)
def _install_roots() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(p for p in sysconfig.get_paths().values() if p)
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


def _module_source(module: types.ModuleType) -> tuple[str, str, str]:
    filename = module.__file__
    assert filename is not None  # only modules loaded from a file travel as source
    with open(filename, encoding="utf-8") as f:
        return module.__name__, f.read(), filename

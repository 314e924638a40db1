"""The payload of a warm ``f.remote(...)``: the function's pickle kept while nothing it captures changed.

A notebook function travels by value: cloudpickle writes its code and the current values of what it
captures (the globals its code reads, its closure, defaults, ``__dict__``). A warm call pickles the same
function again and again, which was the largest part of the client's own time per call. Here that pickle
is kept, per function object, together with what it was made from, and reused only when every one of
those things is *the same object* as then and each is immutable, so the bytes would come out the same:

- the function's code, globals dict, name, qualname, module, doc, defaults, keyword defaults, closure
  cells' contents, ``__dict__`` and annotations;
- the value (or absence) of every global name its code reads, and of the globals cloudpickle copies for
  relative imports (``__package__``, ``__name__``, ``__path__``, ``__file__``);
- the cached source lines of its code's files (a notebook cell's source travels along for tracebacks);
- for a module it reads (a global): its name, still pickled by name (installed, not registered by value),
  and no import since (the pickle names the module's submodules imported at the time).

Captured values must be immutable atoms (None, bool, int, float, complex, str, bytes, and tuples or
frozensets of them), installed modules, or (annotations) builtin classes; anything else (a list, a
helper function, an object) means the function is pickled in full on every call, as before. Arguments,
too, take this path only when they are such atoms (and lists, tuples and dicts of them): anything else,
which could share state with what the function captures, goes with the function in one pickle, as before.

The payload is ``(function, args, kwargs)`` as always; the kept function pickle is nested in it and
unpickled by ``pickle.loads`` in the container.

Example::

    packed = pack_call((train, (3,), {"lr": 1e-3}))   # b"...", or None: pickle it in full
"""

from __future__ import annotations

import builtins
import linecache
import operator
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

from nbmodal import serialization
from nbmodal_wire.blobs import INLINE_LIMIT

_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
_MISSING = object()
# Arguments looked through for the plain path at most this many items (and levels) deep.
_MAX_PLAIN_ITEMS = 64
_MAX_PLAIN_DEPTH = 3
_builtins = builtins.__dict__
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")
_by_value_modules: set[str] = cloudpickle.cloudpickle._PICKLE_BY_VALUE_MODULES  # register_pickle_by_value's


class _KeptPickle:
    """A function's kept pickle inside a call's payload: unpickled by ``pickle.loads`` in the container."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Callable[[bytes], Any], tuple[bytes]]:
        return pickle.loads, (self.data,)


class _Kept:
    """A function's pickle and the state it was made from (compared by identity on each call)."""

    __slots__ = ("names", "files", "modules", "by_value", "state", "payload")

    def __init__(self, names: tuple[str, ...], files: tuple[str, ...], state: list[Any], data: bytes) -> None:
        self.names = names
        self.files = files
        # An import since (the pickle names the submodules imported then), or a module registered by value.
        self.modules = len(sys.modules)
        self.by_value = frozenset(_by_value_modules)
        self.state = state
        self.payload = _KeptPickle(data)


# By function object (the same function, redefined, is another object). Only functions that capture
# nothing but atoms and modules are kept, so holding them is cheap; the oldest go past the bound.
_kept: dict[types.FunctionType, _Kept] = {}
MAX_KEPT = 256
_lock = threading.Lock()


def pack_call(call: tuple[Any, tuple, dict]) -> bytes | None:
    """The inline payload of ``call`` = (function, args, kwargs) with the function's kept pickle; None when
    this path doesn't apply (the caller pickles the call in full, as ``BlobTransfer.pack`` does)."""
    function, args, kwargs = call
    if type(function) is not types.FunctionType or function.__module__ != "__main__":
        return None
    if not (_plain(args, 0) and _plain(kwargs, 0)):
        return None
    kept = function_pickle(function)
    if kept is None:
        return None
    data = pickle.dumps((kept, args, kwargs), protocol=serialization.PICKLE_PROTOCOL)
    return data if len(data) <= INLINE_LIMIT else None


def function_pickle(function: types.FunctionType) -> _KeptPickle | None:
    """The function's pickle, kept while what it captures is unchanged; None when it can't be kept."""
    kept = _kept.get(function)
    if kept is not None and len(sys.modules) == kept.modules and _by_value_modules == kept.by_value:
        state = _state(function, kept.names, kept.files)
        if state is not None and len(state) == len(kept.state) and all(map(operator.is_, state, kept.state)):
            return kept.payload
    names = tuple(cloudpickle.cloudpickle._extract_code_globals(function.__code__))
    files = _code_files(function.__code__)
    state = _state(function, names, files)
    if state is None or not _keepable(function, names):
        with _lock:
            _kept.pop(function, None)
        return None
    data = serialization.dumps(function)
    # The state after pickling: a cell's lines read lazily by linecache are cached now.
    kept = _Kept(names, files, _state(function, names, files) or [], data)
    with _lock:
        _kept.pop(function, None)
        if len(_kept) >= MAX_KEPT:
            del _kept[next(iter(_kept))]
        _kept[function] = kept
    return kept.payload


def forget() -> None:
    """Drop every kept pickle (tests; nothing needs it otherwise)."""
    with _lock:
        _kept.clear()


def _state(function: types.FunctionType, names: tuple[str, ...], files: tuple[str, ...]) -> list[Any] | None:
    """Everything the function's pickle is made of, as objects (compared by identity), or None when some
    of it is neither an atom nor an installed module (then the pickle can't be kept)."""
    if getattr(function, "__type_params__", ()):  # Python 3.12's generic functions: not kept
        return None
    f_globals = function.__globals__
    state: list[Any] = [function.__code__, f_globals, function.__name__, function.__qualname__,
                        function.__module__, function.__doc__, function.__defaults__]
    for mapping in (function.__kwdefaults__, function.__dict__, function.__annotations__):
        if mapping:
            for key, value in mapping.items():
                state += (key, value)
                if type(value) is type:  # an annotation's builtin class: pickled by its name in builtins
                    state.append(_builtins.get(value.__qualname__, _MISSING))
    if function.__defaults__ is not None:
        state.extend(function.__defaults__)
    if function.__closure__ is not None:
        try:
            state.extend(cell.cell_contents for cell in function.__closure__)
        except ValueError:  # an empty cell (a name the enclosing function hasn't bound yet)
            return None
    for name in _BASE_GLOBALS:
        state.append(f_globals.get(name, _MISSING))
    for name in names:
        value = f_globals.get(name, _MISSING)
        state.append(value)
        if type(value) is types.ModuleType:  # pickled by its name
            state.append(value.__name__)
    for filename in files:
        entry = linecache.cache.get(filename)
        state += (entry, entry is not None and os.path.exists(filename))
    return state


def _keepable(function: types.FunctionType, names: tuple[str, ...]) -> bool:
    """Whether every value the function captures pickles the same while it is the same object."""
    f_globals = function.__globals__
    values: list[Any] = [f_globals.get(name, None) for name in names]
    values += (function.__kwdefaults__ or {}).values()
    values += function.__dict__.values()
    values += (value for value in function.__annotations__.values() if not _builtin_class(value))
    values += function.__defaults__ or ()
    values += (cell.cell_contents for cell in function.__closure__ or ())
    values += (f_globals.get(name, None) for name in _BASE_GLOBALS)
    return all(_frozen(value, 0) for value in values)


def _builtin_class(value: Any) -> bool:
    return type(value) is type and value.__module__ == "builtins" and _builtins.get(value.__qualname__) is value


def _frozen(value: Any, depth: int) -> bool:
    kind = type(value)
    if kind in _ATOMS:
        return True
    if kind is tuple or kind is frozenset:
        return depth < _MAX_PLAIN_DEPTH and all(_frozen(item, depth + 1) for item in value)
    if kind is types.ModuleType:
        # Pickled by name (an installed module, not registered by value): the same object stays the same.
        name = value.__name__
        return (sys.modules.get(name) is value and name not in _by_value_modules
                and not serialization.is_local_module(name))
    return False


def _plain(value: Any, depth: int) -> bool:
    """Arguments that share nothing with the function: atoms, and lists, tuples and dicts of them."""
    kind = type(value)
    if kind in _ATOMS:
        return True
    if depth >= _MAX_PLAIN_DEPTH or kind not in (tuple, list, dict) or len(value) > _MAX_PLAIN_ITEMS:
        return False
    if kind is dict:
        return all(type(key) in _ATOMS and _plain(item, depth + 1) for key, item in value.items())
    return all(_plain(item, depth + 1) for item in value)


def _code_files(code: types.CodeType) -> tuple[str, ...]:
    """The file names of a code object and the code nested in it (whose cached lines may travel)."""
    files = {code.co_filename: None}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            files.update(dict.fromkeys(_code_files(const)))
    return tuple(files)

"""A warm call's function, unpickled once per container while its pickle stays the same bytes.

The notebook keeps a function's pickle while nothing it captures changes (nbmodal/_runtime/call_pickle.py)
and nests those bytes in each call's payload, where ``pickle.loads`` makes the function again: its code
object, globals and cells, on every call (about a tenth of a warm call's time in the container). Here the
function made from those bytes is kept and handed to the next call whose pickle is the same bytes, but
only a function no call can tell from a fresh one:

- it captures immutable values only (None, bool, int, float, complex, str, bytes, tuples and frozensets
  of them) and modules (the same module objects a fresh copy would get), as globals, closure cells,
  defaults, keyword defaults and attributes;
- its code (and the code nested in it) writes no global (``global x; x = ...``), no cell of its closure
  (``nonlocal``), and names nothing that reaches its globals, frames or own attributes another way
  (``globals()``, ``exec``, ``sys._getframe``, ``f.__dict__``, ``breakpoint()``…).

Any other function, and anything else nested that way, is unpickled afresh on every call, as before.

    function, args, kwargs = loads(request.payload)
"""

from __future__ import annotations

import dis
import io
import pickle
import types
from typing import Any

# A payload whose function is a kept pickle starts with ``_pickle.loads``, its first global.
KEPT_MARK = b"\x8c\x07_pickle\x94\x8c\x05loads\x94\x93"
_MARK_WITHIN = 32

MAX_FUNCTIONS = 64  # kept functions, the oldest dropped past it
MAX_REFUSED = 64  # pickles known not to be kept, remembered so they aren't examined again
MAX_PICKLE_BYTES = 256 << 10  # larger pickles are unpickled each call (what is kept stays under ~32 MiB)

_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
_GLOBAL_WRITES = frozenset(dis.opmap[name] for name in ("STORE_GLOBAL", "DELETE_GLOBAL"))
# A cell's writes matter in a function with a closure: its cells outlive a call (others are made per call).
_CELL_WRITES = _GLOBAL_WRITES | {dis.opmap[name] for name in ("STORE_DEREF", "DELETE_DEREF")}
# Names through which code reaches its globals, frames or function object without naming them as globals
# (a frame's globals are reached through ``f_globals`` whichever way the frame was found).
_REACHING = frozenset({
    "globals", "vars", "locals", "exec", "eval", "breakpoint", "set_trace", "settrace", "setprofile",
    "_getframe", "currentframe", "f_globals", "f_locals", "f_back", "__globals__", "__closure__", "__defaults__",
    "__kwdefaults__", "__dict__", "__code__", "__func__", "get_referrers", "get_referents", "get_objects",
})

_functions: dict[bytes, types.FunctionType] = {}
_refused: dict[bytes, None] = {}


def loads(payload: bytes) -> Any:
    """``pickle.loads(payload)``, with each nested kept function pickle made at most once (see above)."""
    if KEPT_MARK not in payload[:_MARK_WITHIN]:
        return pickle.loads(payload)
    return _Unpickler(io.BytesIO(payload)).load()


def forget() -> None:
    """Drop every kept function (tests)."""
    _functions.clear()
    _refused.clear()


def _kept_loads(data: bytes) -> Any:
    function = _functions.get(data)
    if function is not None:
        return function
    value = pickle.loads(data)
    if len(data) > MAX_PICKLE_BYTES or data in _refused:
        return value
    if type(value) is types.FunctionType and keepable(value):
        _remember(_functions, data, value, MAX_FUNCTIONS)
    else:
        _remember(_refused, data, None, MAX_REFUSED)
    return value


def _remember(kept: dict[bytes, Any], data: bytes, value: Any, most: int) -> None:
    if len(kept) >= most:
        del kept[next(iter(kept))]  # the oldest
    kept[data] = value


class _Unpickler(pickle.Unpickler):
    """Unpickles the payload's first global, the kept pickle's ``_pickle.loads``, through the cache; anything
    else nested that way (an argument's own reduction) as ``pickle.loads`` does."""

    _first = True  # until the first global is found

    def find_class(self, module: str, name: str) -> Any:
        first, self._first = self._first, False
        if first and module == "_pickle" and name == "loads":
            return _kept_loads
        return super().find_class(module, name)


def keepable(function: types.FunctionType) -> bool:
    """Whether calls of ``function`` can't tell it from a fresh unpickle of it (see the module's doc)."""
    values: list[Any] = [value for key, value in function.__globals__.items() if key != "__builtins__"]
    values += function.__defaults__ or ()
    values += (function.__kwdefaults__ or {}).values()
    values += function.__dict__.values()
    if function.__closure__ is not None:
        try:
            values += (cell.cell_contents for cell in function.__closure__)
        except ValueError:  # an empty cell
            return False
    writes = _GLOBAL_WRITES if function.__closure__ is None else _CELL_WRITES
    return all(map(_immutable, values)) and _code_keepable(function.__code__, writes)


def _immutable(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _ATOMS or kind is types.ModuleType:
        return True
    if kind is tuple or kind is frozenset:
        return depth < 3 and all(_immutable(item, depth + 1) for item in value)
    return False


def _code_keepable(code: types.CodeType, writes: frozenset[int]) -> bool:
    if not _REACHING.isdisjoint(code.co_names):
        return False
    if any(instruction.opcode in writes for instruction in dis.get_instructions(code)):
        return False
    return all(_code_keepable(const, writes) for const in code.co_consts if isinstance(const, types.CodeType))

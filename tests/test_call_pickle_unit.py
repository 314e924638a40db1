"""A warm call's kept function pickle (nbmodal/_runtime/call_pickle.py): reused while nothing the function
captures changed, made anew as soon as anything did, and never kept for what could change unseen."""

from __future__ import annotations

import linecache
import pickle
import sys
import types

import pytest

from nbmodal import serialization
from nbmodal._runtime import call_pickle
from nbmodal._runtime.call_pickle import function_pickle, pack_call

pytestmark = pytest.mark.unit


def notebook(source: str) -> dict:
    """A namespace like a notebook's: its functions are ``__main__``'s, pickled by value."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, "<notebook cell>", "exec"), namespace)
    return namespace


def remote_result(function: types.FunctionType, *args, **kwargs):
    """What the container gets, as ``call_request`` packs it: the payload unpickled, the function called."""
    packed = pack_call((function, args, kwargs))
    if packed is None:  # not kept: the call is pickled in full, as before
        packed = serialization.dumps((function, args, kwargs))
    called, args, kwargs = pickle.loads(packed)
    return called(*args, **kwargs)


def remote_function(function: types.FunctionType) -> types.FunctionType:
    packed = pack_call((function, (), {})) or serialization.dumps((function, (), {}))
    return pickle.loads(packed)[0]


def test_a_warm_function_reuses_its_pickle_and_the_payload_runs_as_before():
    ns = notebook("SCALE = 3\ndef f(x, *, y=1):\n    return (x + y) * SCALE\n")
    kept = function_pickle(ns["f"])
    assert kept is not None and function_pickle(ns["f"]) is kept
    assert remote_result(ns["f"], 2, y=4) == 18
    full = pickle.loads(serialization.dumps((ns["f"], (2,), {"y": 4})))
    assert full[0](*full[1], **full[2]) == 18


@pytest.mark.parametrize("change", [
    "SCALE = 4",                                    # a global it reads, rebound
    "f.__defaults__ = (2,)",                        # its defaults
    "f.__kwdefaults__ = {'y': 2}",                  # its keyword defaults
    "f.note = 'x'",                                 # its __dict__
    "f.__code__ = (lambda x=1, *, y=1: -x).__code__",  # its code
    "len = lambda v: 0",                            # a builtin it reads, shadowed by a (not kept) global
])
def test_any_change_to_what_the_function_captures_makes_a_new_pickle(change):
    ns = notebook("SCALE = 3\ndef f(x=1, *, y=1):\n    return len([x]) * (x + y) * SCALE\n")
    assert remote_function(ns["f"])() == 6
    kept = function_pickle(ns["f"])
    exec(change, ns)
    assert function_pickle(ns["f"]) is not kept
    remote = remote_function(ns["f"])
    assert (remote(), remote.__dict__) == (ns["f"](), ns["f"].__dict__) != (6, {})


def test_a_closure_cell_rebound_makes_a_new_pickle():
    ns = notebook("def make():\n    n = 1\n    def f():\n        return n\n    def bump():\n        nonlocal n\n"
                  "        n += 1\n    return f, bump\nf, bump = make()\n")
    assert remote_result(ns["f"]) == 1
    kept = function_pickle(ns["f"])
    ns["bump"]()
    assert function_pickle(ns["f"]) is not kept and remote_result(ns["f"]) == 2


def test_a_value_that_can_change_in_place_is_never_kept():
    ns = notebook("ITEMS = [1]\ndef f():\n    return sum(ITEMS)\n")
    assert function_pickle(ns["f"]) is None and pack_call((ns["f"], (), {})) is None
    ns["ITEMS"].append(2)  # the full pickle (BlobTransfer.pack) then carries the newest value
    assert pickle.loads(serialization.dumps(ns["f"]))() == 3


def test_a_helper_function_or_an_object_argument_goes_in_one_full_pickle():
    ns = notebook("def helper():\n    return 1\ndef f():\n    return helper()\ndef g(x):\n    return x\n")
    assert function_pickle(ns["f"]) is None  # a notebook helper can change without its name being rebound
    assert pack_call((ns["g"], (ns["helper"],), {})) is None  # could share the function's globals
    assert pack_call((ns["g"], (object(),), {})) is None
    assert pack_call((ns["g"], ([1, "a", {"k": 2.0}],), {"z": (b"x", None)})) is not None


def test_an_import_or_a_module_registered_by_value_makes_a_new_pickle(monkeypatch):
    ns = notebook("import json\ndef f():\n    return json.dumps(1)\n")
    kept = function_pickle(ns["f"])
    assert kept is not None and remote_result(ns["f"]) == "1"
    monkeypatch.setitem(sys.modules, "nbmodal_test_new_module", types.ModuleType("nbmodal_test_new_module"))
    again = function_pickle(ns["f"])
    assert again is not kept
    monkeypatch.setattr(call_pickle, "_by_value_modules", {"json"})  # register_pickle_by_value(json)
    assert function_pickle(ns["f"]) is None


def test_a_cells_cached_source_lines_changing_makes_a_new_pickle(monkeypatch):
    filename = "<ipython-input-nbmodal-test>"
    source = "def f():\n    return 7\n"
    monkeypatch.setitem(linecache.cache, filename, (len(source), None, source.splitlines(True), filename))
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    kept = function_pickle(namespace["f"])
    assert kept is not None and function_pickle(namespace["f"]) is kept
    monkeypatch.setitem(linecache.cache, filename, (len(source), None, ["# another\n"], filename))
    assert function_pickle(namespace["f"]) is not kept


def test_functions_not_defined_in_the_notebook_take_the_usual_path():
    assert pack_call((len, (), {})) is None
    assert pack_call((test_a_closure_cell_rebound_makes_a_new_pickle, (), {})) is None  # a module's: by name

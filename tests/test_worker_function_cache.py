"""The container's kept functions (remote_agent/worker/function_cache.py): a warm call's function is made once
from its pickle only where no call can tell it from a fresh one."""

from __future__ import annotations

import pickle
import signal

import pytest

from nbmodal._runtime import call_pickle
from nbmodal_wire import pb
from remote_agent.worker import function_cache
from remote_agent.worker.execute import Interrupts, execute

pytestmark = pytest.mark.unit


def notebook_function(source: str, name: str, **namespace):
    """A function defined as in a notebook cell (in ``__main__``: cloudpickle sends it by value)."""
    scope = {"__name__": "__main__", **namespace}
    exec(compile(source, "<cell>", "exec"), scope)
    return scope[name]


def payload(function, *args, **kwargs) -> bytes:
    """The payload a warm ``f.remote(*args, **kwargs)`` sends (its function as a kept pickle)."""
    call_pickle.forget()
    packed = call_pickle.pack_call((function, args, kwargs))
    assert packed is not None, "the notebook side sends this function in full: not what this test is about"
    return packed


@pytest.fixture(autouse=True)
def _fresh_cache():
    function_cache.forget()
    yield
    function_cache.forget()


def test_a_plain_function_is_made_once_and_still_gets_each_calls_arguments() -> None:
    scale = notebook_function("FACTOR = 3\ndef scale(x, offset=1):\n    return x * FACTOR + offset\n", "scale")
    first, args, kwargs = function_cache.loads(payload(scale, 2))
    again, args2, kwargs2 = function_cache.loads(payload(scale, 5, offset=0))
    assert again is first
    assert (first(*args, **kwargs), again(*args2, **kwargs2)) == (7, 15)


def test_a_function_that_writes_a_global_is_made_afresh_each_call() -> None:
    count = notebook_function("n = 0\ndef count():\n    global n\n    n += 1\n    return n\n", "count")
    data = payload(count)
    results = []
    for _ in range(3):
        function, args, kwargs = function_cache.loads(data)
        results.append(function(*args, **kwargs))
    assert results == [1, 1, 1]  # a fresh globals dict per call, as without the cache


def test_a_function_that_writes_its_closure_is_made_afresh_each_call() -> None:
    make = notebook_function(
        "def make():\n    n = 0\n    def count():\n        nonlocal n\n        n += 1\n        return n\n"
        "    return count\n", "make")
    data = payload(make())
    results = [function() for function, _, _ in (function_cache.loads(data) for _ in range(3))]
    assert results == [1, 1, 1]


def test_a_closure_that_only_reads_its_cells_is_kept() -> None:
    make = notebook_function("def make(k):\n    def times(x):\n        return x * k\n    return times\n", "make")
    data = payload(make(4))
    first, _, _ = function_cache.loads(data)
    again, _, _ = function_cache.loads(data)
    assert again is first and first(2) == 8


@pytest.mark.parametrize("body", [
    "    globals()['seen'] = globals().get('seen', 0) + 1\n    return globals()['seen']\n",
    "    import sys\n    frame = sys._getframe()\n    return frame.f_globals.setdefault('x', 1)\n",
    "    exec('y = 1')\n    return 1\n",
    "    def inner():\n        global z\n        z = 1\n    inner()\n    return z\n",
])
def test_code_that_reaches_its_globals_another_way_is_not_kept(body: str) -> None:
    function = notebook_function("def f():\n" + body, "f")
    assert not function_cache.keepable(function)
    data = payload(function)
    first, _, _ = function_cache.loads(data)
    again, _, _ = function_cache.loads(data)
    assert again is not first


def test_mutable_captured_values_are_not_kept() -> None:
    # The notebook sends these in full (no kept pickle), but the container doesn't rely on it.
    items = notebook_function("ITEMS = []\ndef add(x):\n    ITEMS.append(x)\n    return len(ITEMS)\n", "add")
    defaults = notebook_function("def add(x, into=[]):\n    into.append(x)\n    return len(into)\n", "add")
    attribute = notebook_function("def f():\n    return 1\n", "f")
    attribute.seen = []
    assert not any(function_cache.keepable(f) for f in (items, defaults, attribute))


def test_other_payloads_unpickle_as_before() -> None:
    data = pickle.dumps((len, ([1, 2],), {}), protocol=5)
    assert function_cache.loads(data) == (len, ([1, 2],), {})
    assert not function_cache._functions


def test_execute_runs_a_kept_function_again_with_new_arguments() -> None:
    add = notebook_function("def add(a, b):\n    return a + b\n", "add")
    previous = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM))
    try:
        interrupts = Interrupts()
        outcomes = [execute(pb.Execute(run_id=f"r-{i}", kind=pb.FUNCTION, payload=payload(add, i, 10)),
                            None, interrupts) for i in range(3)]
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGALRM, previous[1])
    assert [pickle.loads(outcome.return_value) for outcome in outcomes] == [10, 11, 12]
    assert len(function_cache._functions) == 1

"""A notebook function called again and again on the real local agent sees the newest values of what it
captures, though its pickle is kept between calls (nbmodal/_runtime/call_pickle.py)."""

from __future__ import annotations

import pytest

import nbmodal

pytestmark = pytest.mark.agent

app = nbmodal.App("warm-calls")


def notebook(source: str) -> dict:
    """A namespace like a notebook's: its functions are ``__main__``'s, pickled by value."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, "<notebook cell>", "exec"), namespace)
    return namespace


def test_a_warm_function_sees_each_new_value_of_its_globals_and_defaults():
    ns = notebook("SCALE = 2\ndef scaled(x, offset=0):\n    return x * SCALE + offset\n")
    scaled = app.function()(ns["scaled"])
    assert [scaled.remote(3) for _ in range(3)] == [6, 6, 6]
    ns["SCALE"] = 5
    assert scaled.remote(3) == 15
    ns["scaled"].__defaults__ = (1,)
    assert scaled.remote(3) == 16 and scaled.remote(x=1, offset=-5) == 0
    ns["SCALE"] = [1, 2]  # not kept (it could change in place): the full pickle each time
    assert scaled.remote(2, []) == [1, 2, 1, 2]
    ns["SCALE"].append(3)
    assert scaled.remote(1, [0]) == [1, 2, 3, 0]

"""One run, many inputs: how a map's batch executes inside a container.

The client sends ``run_batch`` by reference with the function and a batch of
inputs; each input's outcome comes back on its own, so one failure costs
only itself (and is retried alone).
"""

from __future__ import annotations

import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle

# Set by the container's main loop: tells the agent which input the output that follows belongs to.
_announce = None


def set_announcer(announce) -> None:
    global _announce
    _announce = announce


def run_batch(function, inputs: list[tuple[int, tuple, dict]], max_inputs: int = 1) -> list[tuple[int, bool, Any]]:
    """[(index, True, value)] or [(index, False, (pickled exception, type name, message, traceback))].

    With ``max_inputs`` > 1 (``@nbmodal.concurrent``), up to that many inputs run at once on threads.
    """
    if max_inputs > 1:
        with ThreadPoolExecutor(max_inputs, thread_name_prefix="input") as pool:
            return list(pool.map(lambda item: _one(function, *item), inputs))
    return [_one(function, *item) for item in inputs]


def _one(function, index: int, args: tuple, kwargs: dict) -> tuple[int, bool, Any]:
    if _announce is not None:
        _announce(index)
    try:
        return index, True, function(*args, **kwargs)
    except Exception as exc:
        try:
            pickled = cloudpickle.dumps(exc)
        except Exception:
            pickled = b""
        remote_traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
        return index, False, (pickled, type(exc).__qualname__, str(exc), remote_traceback)

"""One run, many inputs: how a map's batch executes inside a container.

The client sends ``run_batch`` by reference with the function and a batch of
inputs; each input's outcome comes back on its own, so one failure costs
only itself (and is retried alone).
"""

from __future__ import annotations

import traceback
from typing import Any

import cloudpickle


def run_batch(function, inputs: list[tuple[int, tuple, dict]]) -> list[tuple[int, bool, Any]]:
    """[(index, True, value)] or [(index, False, (pickled exception, type name, message, traceback))]."""
    outcomes = []
    for index, args, kwargs in inputs:
        try:
            outcomes.append((index, True, function(*args, **kwargs)))
        except Exception as exc:
            try:
                pickled = cloudpickle.dumps(exc)
            except Exception:
                pickled = b""
            outcomes.append((index, False, (pickled, type(exc).__qualname__, str(exc),
                                            "".join(traceback.format_exception(type(exc), exc,
                                                                               exc.__traceback__.tb_next)))))
    return outcomes

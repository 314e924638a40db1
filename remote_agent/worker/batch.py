"""One run, many inputs: how a map's batch executes inside a container.

The client sends ``run_batch`` by reference with the function and a batch of
inputs; each input's outcome comes back on its own, so one failure costs
only itself (and is retried alone).
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Set by the container's main loop: called as each input begins, so that the output that
# follows can be filed under it (announced to the agent only if the input prints anything).
_begin_input = None


def set_input_hook(begin_input) -> None:
    global _begin_input
    _begin_input = begin_input


def run_batch(function, inputs: list[tuple[int, tuple, dict]], max_inputs: int = 1,
              timeout_s: float = 0.0) -> list[tuple[int, bool, Any]]:
    """[(index, True, value)] or [(index, False, error record)] in input order.

    A failed input's error record is a serialized ``pb.ErrorInfo``, made as a single run's failure is
    (``execute.error_info``), so the client rebuilds it as it rebuilds a ``.remote()`` exception.
    With ``max_inputs`` > 1 (``@nbmodal.concurrent``), up to that many inputs run at once on threads.
    ``timeout_s`` applies to each input on its own (one after another: the alarm is the main thread's).
    """
    if max_inputs > 1:
        with ThreadPoolExecutor(max_inputs, thread_name_prefix="input") as pool:
            return list(pool.map(lambda item: _one(function, *item), inputs))
    return [_one(function, *item, timeout_s=timeout_s) for item in inputs]


def _one(function, index: int, args: tuple, kwargs: dict, timeout_s: float = 0.0) -> tuple[int, bool, Any]:
    from remote_agent.worker.execute import RunTimeout, error_info

    if _begin_input is not None:
        _begin_input(index)
    if timeout_s > 0:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return index, True, function(*args, **kwargs)
    except RunTimeout:
        timed_out = TimeoutError(f"input {index} exceeded its timeout of {timeout_s:g} s")
        return index, False, error_info(timed_out).SerializeToString()
    except Exception as exc:
        return index, False, error_info(exc).SerializeToString()
    finally:
        if timeout_s > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)

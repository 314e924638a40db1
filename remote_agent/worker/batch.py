"""One run, many inputs: how a map's batch executes inside a container.

The client sends ``run_batch`` by reference with the function and a batch of
inputs; each input's outcome comes back on its own, so one failure costs
only itself (and is retried alone).
"""

from __future__ import annotations

import functools
import inspect
import signal
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from remote_agent.worker.batching import batched_options, run_batched
from remote_agent.worker.classes import prepare_instance, target_method

# Set by the container's main loop: called as each input begins, so that the output that
# follows can be filed under it (announced to the agent only if the input prints anything).
_begin_input = None


def set_input_hook(begin_input) -> None:
    global _begin_input
    _begin_input = begin_input


def run_batch(function, inputs: list[tuple[int, tuple, dict]], max_inputs: int = 1,
              timeout_s: float = 0.0, retry_delays: tuple[float, ...] = ()) -> list[tuple[int, bool, Any]]:
    """[(index, True, value)] or [(index, False, error record)] in input order.

    A failed input's error record is a serialized ``pb.ErrorInfo``, made as a single run's failure is
    (``execute.error_info``), so the client rebuilds it as it rebuilds a ``.remote()`` exception.
    With ``max_inputs`` > 1 (``@nbmodal.concurrent``), up to that many inputs run at once on threads.
    ``timeout_s`` applies to each input on its own (one after another: the alarm is the main thread's).
    An ``async def`` function's inputs run as coroutines on the container's event loop instead, up to
    ``max_inputs`` at once (Modal's ``@concurrent`` for async functions), each with its own timeout.
    A ``@batched`` function is called once per group of inputs (``worker/batching.py``). ``retry_delays``
    (``spawn_map``, whose caller doesn't wait) retries failed inputs here (``worker/retrying.py``).
    """
    if retry_delays:
        from remote_agent.worker.retrying import run_retrying

        return run_retrying(lambda items: run_batch(function, items, max_inputs, timeout_s), inputs, retry_delays)
    method = target_method(function)
    # Cls.with_batching marks the call itself; @batched marks the method (or function).
    batching = (batched_options(function) or batched_options(method or function)) if inputs else None
    if batching is not None:
        signature_of = functools.partial(method, None) if method is not None else function  # no `self`
        return run_batched(function, inputs, batching[0], timeout_s, _begin_input, signature_of)
    if inputs and _worker().event_loop.is_coroutine_function(method or function):
        try:
            prepare_instance(function)  # a class's @enter hooks run here, before the inputs start on the loop
        except Exception as exc:  # each input fails with it, as each would in the sync path
            record = _worker().execute.error_info(exc).SerializeToString()
            return [(index, False, record) for index, _, _ in inputs]
        return _worker().event_loop.run(_run_coroutines(function, inputs, max_inputs, timeout_s))
    if max_inputs > 1:
        with ThreadPoolExecutor(max_inputs, thread_name_prefix="input") as pool:
            return list(pool.map(lambda item: _one(function, *item), inputs))
    return [_one(function, *item, timeout_s=timeout_s) for item in inputs]


def _one(function, index: int, args: tuple, kwargs: dict, timeout_s: float = 0.0) -> tuple[int, bool, Any]:
    _start_input(index)
    if timeout_s > 0:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        value = function(*args, **kwargs)
        if inspect.isawaitable(value):  # a wrapper that hid its async def: the coroutine runs on the loop
            value = _worker().event_loop.resolve(value)
        return index, True, value
    except Exception as exc:
        return index, False, _worker().execute.error_info(exc).SerializeToString()
    except BaseException as exc:  # RunTimeout is one, so that user code's `except Exception` can't swallow it
        if isinstance(exc, _worker().execute.RunTimeout):
            return index, False, _timed_out_record(index, timeout_s)
        raise
    finally:
        if timeout_s > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _start_input(index: int) -> None:
    """Input ``index`` begins: its id for nbmodal.current_input_id(), and its output filed under it."""
    _worker().context.begin_input(index)
    if _begin_input is not None:
        _begin_input(index)


def _timed_out_record(index: int, timeout_s: float) -> bytes:
    timed_out = TimeoutError(f"input {index} exceeded its timeout of {timeout_s:g} s")
    return _worker().execute.error_info(timed_out).SerializeToString()


@functools.cache
def _worker() -> SimpleNamespace:
    """The container's modules, imported on first use: the notebook imports this module (its pickles
    name run_batch) but must not load the worker; cached, since a map's every input needs them."""
    from remote_agent.worker import context, event_loop, execute

    return SimpleNamespace(context=context, event_loop=event_loop, execute=execute)


async def _run_coroutines(function, inputs: list[tuple[int, tuple, dict]], max_inputs: int,
                          timeout_s: float) -> list[tuple[int, bool, Any]]:
    """The batch of an ``async def`` function: its inputs' coroutines, up to ``max_inputs`` at once."""
    import asyncio  # here: a container's start doesn't import asyncio (it runs on the container's loop by now)

    slots = asyncio.Semaphore(max(1, max_inputs))

    async def one(index: int, args: tuple, kwargs: dict) -> tuple[int, bool, Any]:
        async with slots:
            _start_input(index)  # each input is a task of its own, with its own context
            try:
                awaitable = function(*args, **kwargs)
                if not asyncio.iscoroutine(awaitable) and not asyncio.isfuture(awaitable):
                    return index, True, awaitable  # a method that turned out not to be async
                value = await (asyncio.wait_for(awaitable, timeout_s) if timeout_s > 0 else awaitable)
                return index, True, value
            except asyncio.TimeoutError:
                return index, False, _timed_out_record(index, timeout_s)
            except Exception as exc:
                return index, False, _worker().execute.error_info(exc).SerializeToString()

    return list(await asyncio.gather(*(one(*item) for item in inputs)))

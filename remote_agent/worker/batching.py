"""Dynamic batching inside the container: ``@nbmodal.batched`` functions get lists, one call per group.

A batched function takes one list per parameter and returns one result per
input, in order (Modal's ``@modal.batched``)::

    @app.function()
    @nbmodal.batched(max_batch_size=8, wait_ms=100)
    def embed(texts: list[str]) -> list[list[float]]: ...

The client sends the inputs (a map's batch, or concurrent ``.remote()`` calls it
grouped for ``wait_ms``); here they are cut into groups of at most
``max_batch_size``, each group is one call, and each input gets its own
outcome back. A call that raises, or returns the wrong number of results, fails
every input of its group with that error.
"""

from __future__ import annotations

import functools
import inspect
import signal
from typing import Any

# The attribute @nbmodal.batched sets on the user's function: (max_batch_size, wait_ms).
BATCHED_ATTRIBUTE = "_nbmodal_batched"


def batched_options(function: Any) -> tuple[int, int] | None:
    """``(max_batch_size, wait_ms)`` of a ``@batched`` function: set on it, on the function a bound method
    wraps, or (a class's method caller) on the caller (``Cls.with_batching``) or the user's method."""
    from remote_agent.worker.classes import target_method

    candidates = (function, getattr(function, "__func__", None), target_method(function))
    for candidate in candidates:
        options = getattr(candidate, BATCHED_ATTRIBUTE, None) if candidate is not None else None
        if options is not None:
            return int(options[0]), int(options[1])
    return None


def signature_source(function: Any) -> Any:
    """What names a batched call's parameters: the function, or a class's method without ``self``."""
    from remote_agent.worker.classes import target_method

    method = target_method(function)
    return functools.partial(method, None) if method is not None else function


def check_batchable(function: Any) -> None:
    """Refuse, at decoration, a function that can't take one list per parameter."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check
        return
    variadic = [p.name for p in parameters if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if variadic:
        raise TypeError(f"a @batched function takes one list per parameter; "
                        f"{getattr(function, '__qualname__', function)} has variadic *{', *'.join(variadic)}")


def group_arguments(function: Any, inputs: list[tuple[tuple, dict]]) -> tuple[list[list], dict[str, list]]:
    """The call of ``function`` for a group of inputs: positional lists and keyword lists, one list per
    parameter, each input's value (or its default) in its place."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return [list(column) for column in zip(*(args for args, _ in inputs))], {}
    columns: dict[str, list] = {}
    for args, kwargs in inputs:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            columns.setdefault(name, []).append(value)
    positional: list[list] = []
    keywords: dict[str, list] = {}
    for parameter in signature.parameters.values():
        if parameter.name not in columns:
            continue
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) and not keywords:
            positional.append(columns[parameter.name])
        else:
            keywords[parameter.name] = columns[parameter.name]
    return positional, keywords


def run_batched(function: Any, inputs: list[tuple[int, tuple, dict]], max_batch_size: int,
                timeout_s: float = 0.0, begin_input=None, signature_of: Any = None) -> list[tuple[int, bool, Any]]:
    """Outcomes ``(index, ok, value or error record)`` of every input, in input order, calling
    ``function`` once per group of at most ``max_batch_size`` inputs (``timeout_s`` per group).
    ``signature_of`` names the parameters when ``function`` hides them (a class's method caller)."""
    outcomes: list[tuple[int, bool, Any]] = []
    step = max(1, max_batch_size)
    for start in range(0, len(inputs), step):
        outcomes += _run_group(function, inputs[start:start + step], timeout_s, begin_input,
                               signature_of or signature_source(function))
    return outcomes


def _run_group(function: Any, group: list[tuple[int, tuple, dict]], timeout_s: float,
               begin_input, signature_of: Any) -> list[tuple[int, bool, Any]]:
    from remote_agent.worker import event_loop
    from remote_agent.worker.execute import RunTimeout, error_info

    indices = [index for index, _, _ in group]
    if begin_input is not None:
        begin_input(indices[0])  # the group's output is filed under its first input
    if timeout_s > 0:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        positional, keywords = group_arguments(signature_of, [(args, kwargs) for _, args, kwargs in group])
        results = event_loop.resolve(function(*positional, **keywords))
        results = _as_list(results)
        if results is None or len(results) != len(group):
            count = len(results) if results is not None else "no list of"
            raise ValueError(f"@batched function {getattr(function, '__qualname__', function)} returned {count} "
                             f"results for a batch of {len(group)} inputs; it must return a list with one "
                             f"result per input, in order")
        return [(index, True, value) for index, value in zip(indices, results)]
    except RunTimeout:
        record = error_info(TimeoutError(f"a batch of {len(group)} inputs exceeded its timeout of {timeout_s:g} s")
                            ).SerializeToString()
    except Exception as exc:
        record = error_info(exc).SerializeToString()
    finally:
        if timeout_s > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return [(index, False, record) for index in indices]


def call_as_batch_of_one(function: Any, args: tuple, kwargs: dict) -> Any:
    """One input of a ``@batched`` function, called alone (``.spawn``): its one result, or its error."""
    from remote_agent.worker import event_loop

    positional, keywords = group_arguments(signature_source(function), [(args, kwargs)])

    results = _as_list(event_loop.resolve(function(*positional, **keywords)))
    if results is None or len(results) != 1:
        raise ValueError(f"@batched function {getattr(function, '__qualname__', function)} returned "
                         f"{'no list of' if results is None else len(results)} results for a batch of 1 input; "
                         f"it must return a list with one result per input")
    return results[0]


def _as_list(results: Any) -> list | None:
    """A batched call's results as a list (a tuple is accepted too); None for anything else."""
    if isinstance(results, tuple):
        return list(results)
    return results if isinstance(results, list) else None

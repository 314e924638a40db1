"""Retries inside the container, for runs whose caller isn't there to retry them.

``.spawn()`` and ``.spawn_map()`` return at once: the client that started them
may be gone when an input fails, so their ``retries=`` are applied here, in
the container, with the same backoff as a map's (the client computes the
delays from ``nbmodal.Retries``). A container that dies is not retried here
(``FunctionCall.get`` re-spawns a lost call when its caller is still there).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

Outcome = tuple[int, bool, Any]


def call_retrying(function: Callable, args: tuple, kwargs: dict, delays: tuple[float, ...]) -> Any:
    """``function(*args, **kwargs)``, retried after each delay in ``delays`` while it raises."""
    from remote_agent.worker import event_loop

    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            return event_loop.resolve(function(*args, **kwargs))
        except Exception as exc:
            if delay is None:
                raise
            _say_retrying(getattr(function, "__qualname__", "function"), attempt, len(delays), exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def run_retrying(run: Callable[[list[tuple[int, tuple, dict]]], list[Outcome]],
                 inputs: list[tuple[int, tuple, dict]], delays: tuple[float, ...]) -> list[Outcome]:
    """Outcomes of ``run(inputs)``, in input order, with each failed input run again (alone with the
    other failures) after each delay in ``delays`` while it fails."""
    outcomes = {index: (index, ok, value) for index, ok, value in run(inputs)}
    by_index = {item[0]: item for item in inputs}
    for attempt, delay in enumerate(delays, start=1):
        failed = [by_index[index] for index, (_, ok, _) in outcomes.items() if not ok]
        if not failed:
            break
        print(f"[nbmodal] {len(failed)} input(s) failed; retry {attempt} of {len(delays)} in {delay:g} s",
              file=sys.stderr, flush=True)
        time.sleep(delay)
        outcomes.update((index, (index, ok, value)) for index, ok, value in run(failed))
    return [outcomes[index] for index, _, _ in inputs]


def _say_retrying(name: str, attempt: int, retries: int, exc: BaseException, delay: float) -> None:
    # On the run's own stderr (the user's stream, not a log): the notebook and `nbmodal logs` show why
    # the input ran again.
    print(f"[nbmodal] {name} failed ({type(exc).__name__}: {exc}); retry {attempt} of {retries} in {delay:g} s",
          file=sys.stderr, flush=True)

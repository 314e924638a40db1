"""``@nbmodal.batched``: dynamic batching, the client's half.

The container calls the user's function once per group of inputs
(``remote_agent/worker/batching.py``). The inputs reach it two ways:

- a map's batches already hold many inputs; a batch is at least
  ``max_batch_size`` inputs, so each call gets a full group;
- concurrent ``.remote()`` calls of one function *in this process* (threads,
  ``.remote.aio`` tasks) are collected by a ``RemoteBatcher``: the first call
  waits up to ``wait_ms`` for others (or until ``max_batch_size`` have come),
  then sends them as one batch run; each caller gets its own result or error.

Calls from different processes (two notebooks) are not grouped with each other.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from remote_agent.worker.batching import BATCHED_ATTRIBUTE, batched_options, check_batchable

F = TypeVar("F", bound=Callable[..., Any])

MAX_BATCH_SIZE = 1000  # Modal's limits
MAX_WAIT_MS = 10 * 60 * 1000

# A batch's outcomes: [(input index, ok, value or error)], the error as ``send`` reports it.
Outcomes = list[tuple[int, bool, Any]]


def batched(*, max_batch_size: int, wait_ms: int) -> Callable[[F], F]:
    """Group concurrent inputs into one call taking lists, as Modal's ``@modal.batched``.

    The function takes one list per parameter and returns a list with one result per input.
    Each caller passes single values and gets its own result back.

    Example::

        @app.function()
        @nbmodal.batched(max_batch_size=8, wait_ms=100)
        def add(xs: list[int], ys: list[int]) -> list[int]:
            return [x + y for x, y in zip(xs, ys)]

        add.remote(1, 2)                         # 3 (grouped with concurrent calls)
        list(add.map([1, 2, 3], [10, 20, 30]))   # [11, 22, 33], in calls of up to 8
    """
    if not 1 <= max_batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"max_batch_size must be between 1 and {MAX_BATCH_SIZE}, not {max_batch_size}")
    if not 0 <= wait_ms <= MAX_WAIT_MS:
        raise ValueError(f"wait_ms must be between 0 and {MAX_WAIT_MS} (10 minutes), not {wait_ms}")

    def mark(fn: F) -> F:
        check_batchable(fn)
        setattr(fn, BATCHED_ATTRIBUTE, (max_batch_size, wait_ms))
        return fn

    return mark


def batched_size(fn: Any) -> int:
    """``max_batch_size`` of a ``@batched`` function, else 0."""
    options = batched_options(fn)
    return options[0] if options is not None else 0


class _Group:
    """Inputs collected for one batch run, and their outcomes once it is done."""

    def __init__(self) -> None:
        self.inputs: list[tuple[tuple, dict]] = []
        self.full = threading.Event()
        self.done = threading.Event()
        self.outcomes: dict[int, tuple[bool, Any]] = {}


class RemoteBatcher:
    """Collects concurrent single calls of one ``@batched`` function into batch runs.

    ``send(inputs)`` runs one batch (``[(index, args, kwargs)]``) and returns its outcomes; it is
    called on the thread of the group's first caller. An error it raises fails every call of the group.
    """

    def __init__(self, max_batch_size: int, wait_ms: int, send: Callable[[list[tuple[int, tuple, dict]]], Outcomes]):
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000
        self.send = send
        self._lock = threading.Lock()
        self._open: _Group | None = None  # the group still taking inputs

    def call(self, args: tuple, kwargs: dict) -> Any:
        """One input's result (or its error raised), once its group has run."""
        with self._lock:
            group, leader = self._open, False
            if group is None:
                group, leader = _Group(), True
                self._open = group
            index = len(group.inputs)
            group.inputs.append((args, kwargs))
            if len(group.inputs) >= self.max_batch_size:
                self._close(group)
        if leader:
            group.full.wait(self.wait_s)
            with self._lock:
                self._close(group)
            self._run(group)
        else:
            group.done.wait()
        ok, value = group.outcomes[index]
        if ok:
            return value
        raise value

    def _close(self, group: _Group) -> None:
        if self._open is group:
            self._open = None
        group.full.set()

    def _run(self, group: _Group) -> None:
        try:
            outcomes = self.send([(index, args, kwargs) for index, (args, kwargs) in enumerate(group.inputs)])
            group.outcomes = {index: (ok, value) for index, ok, value in outcomes}
        except BaseException as exc:  # the run failed as a whole: so does every call in it
            group.outcomes = {index: (False, exc) for index in range(len(group.inputs))}
            if not isinstance(exc, Exception):
                raise
        finally:
            group.done.set()


_batchers: weakref.WeakKeyDictionary[Any, RemoteBatcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def remote_batcher(function: Any, send: Callable[[list[tuple[int, tuple, dict]]], Outcomes]) -> RemoteBatcher:
    """The one batcher of a ``@batched`` ``Function`` in this process."""
    max_batch_size, wait_ms = batched_options(function.raw_f) or (1, 0)
    with _batchers_lock:
        batcher = _batchers.get(function)
        if batcher is None:
            batcher = _batchers[function] = RemoteBatcher(max_batch_size, wait_ms, send)
        return batcher

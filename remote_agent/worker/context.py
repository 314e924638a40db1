"""What code running in a container may ask about its run: set by the worker, read through nbmodal.

The worker marks each run as it begins (``begin_run``, from ``execute``) and
each input of a map's batch as it begins (``begin_input``, from ``batch``);
``nbmodal.current_function_call_id()`` and ``nbmodal.current_input_id()``
read them. Inputs that run at once on threads (``@nbmodal.concurrent``) each
see their own input id: it is a context variable, one per thread.

Kept free of ``nbmodal_wire`` and of anything heavy: the notebook side
imports it lazily, and only the container ever sets it.
"""

from __future__ import annotations

from contextvars import ContextVar

_run_id = ""
_input_index: ContextVar[int] = ContextVar("nbmodal_input_index", default=0)
_in_batch: ContextVar[bool] = ContextVar("nbmodal_in_batch", default=False)  # a map's input runs here


def begin_run(run_id: str) -> None:
    """A run starts in this container: its id is the function call id of the code it runs."""
    global _run_id
    _run_id = run_id
    _input_index.set(0)
    _in_batch.set(False)


def begin_input(index: int) -> None:
    """Input ``index`` of the current run (a map's batch) starts on this thread."""
    _input_index.set(index)
    _in_batch.set(True)


def map_input_index() -> int | None:
    """The index of the map input running on this thread; None outside a map's batch."""
    return _input_index.get() if _in_batch.get() else None


def in_container() -> bool:
    """Whether this process has run (or is running) a run as a container."""
    return bool(_run_id)


def function_call_id() -> str:
    """The current run's id (``""`` outside a container): what ``FunctionCall.object_id`` is."""
    return _run_id


def input_id() -> str:
    """``in-<run id>-<input index>`` for the input being processed (``""`` outside a container)."""
    return f"in-{_run_id}-{_input_index.get()}" if _run_id else ""

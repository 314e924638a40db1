"""The container's event loop: where ``async def`` functions, methods, generators and hooks run.

One loop per container, on a thread of its own, kept across runs: an async
client made in an ``@enter`` method (bound to the loop it was made on) keeps
working for every input the container serves. The thread that runs user code
(the main thread, or a batch's input thread) hands a coroutine to the loop and
waits for it; that wait is where SIGINT and the timeout alarm land, and they
cancel the coroutine (``asyncio.CancelledError`` inside it, so its ``finally``
blocks run) before the interrupt is re-raised, exactly as for sync code.

    result = event_loop.run(fetch_all(urls))          # from the main thread
    for item in event_loop.iterate(stream_tokens()):  # an async generator's items
        ...
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long an interrupted coroutine may take to finish after its cancel (its ``finally`` blocks) before the
# interrupt is reported anyway; a coroutine that blocks the loop with sync code can't be cancelled at all.
CANCEL_WAIT_S = 10.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_pid = 0


def container_loop() -> asyncio.AbstractEventLoop:
    """The container's loop, started on first use (never in a zygote: a fork doesn't keep threads)."""
    global _loop, _loop_thread, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_serve, args=(loop,), name="nbmodal-event-loop", daemon=True)
            thread.start()
            _loop, _loop_thread, _loop_pid = loop, thread, os.getpid()
        return _loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def in_loop_thread() -> bool:
    return _loop_thread is not None and threading.current_thread() is _loop_thread


def run(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` on the container's loop and return its result (or raise its exception).

    An exception raised in the waiting thread (KeyboardInterrupt from SIGINT, the run's timeout)
    cancels the coroutine, waits up to ``CANCEL_WAIT_S`` for it to finish, and is re-raised.
    The caller's context variables (the current input, say) are the coroutine's.
    """
    if in_loop_thread():
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never to run: no "never awaited" warning on top of the error
        raise RuntimeError("a coroutine can't be run to completion from inside the container's event loop; "
                           "await it instead")
    loop = container_loop()
    coroutine = _as_coroutine(awaitable)
    context = contextvars.copy_context()
    finished = threading.Event()
    started: dict[str, asyncio.Task] = {}

    def start() -> None:
        task = context.run(loop.create_task, coroutine)
        task.add_done_callback(lambda _: finished.set())
        started["task"] = task

    def cancel() -> None:
        task = started.get("task")
        if task is not None:
            task.cancel()
        else:  # the interrupt came before start() was queued: the coroutine never ran
            coroutine.close()
            finished.set()

    try:
        loop.call_soon_threadsafe(start)
        finished.wait()  # interruptible: SIGINT and the alarm raise here (or just before)
    except BaseException:
        loop.call_soon_threadsafe(cancel)  # after start(), if it was queued: the loop runs callbacks in order
        if not finished.wait(CANCEL_WAIT_S):
            _abandon(loop)
        raise
    return started["task"].result()


def _abandon(loop: asyncio.AbstractEventLoop) -> None:
    """A cancelled coroutine that doesn't finish holds the loop (sync code in an ``async def``):
    later coroutines get a new loop rather than queue behind it."""
    global _loop
    log.warning("an interrupted coroutine did not finish within %g s of its cancel (sync code blocking the "
                "event loop?); later coroutines run on a new loop", CANCEL_WAIT_S)
    with _lock:
        if _loop is loop:
            _loop = None


def iterate(generator: AsyncIterator[T]) -> Iterator[T]:
    """The items of an async generator (or any async iterator), each produced on the container's loop.

    Interrupts while an item is produced cancel it, as ``run`` does; when iteration stops early the
    generator is closed on the loop (its ``finally`` blocks run there).
    """
    exhausted = False
    try:
        while True:
            try:
                item = run(_next_item(generator))
            except StopAsyncIteration:
                exhausted = True
                return
            yield item
    finally:
        close = getattr(generator, "aclose", None)
        if not exhausted and close is not None:
            try:
                run(close())
            except Exception:  # an error while closing must not hide the one that stopped the iteration
                log.exception("closing an async generator failed")


async def _next_item(generator: AsyncIterator[T]) -> T:
    return await generator.__anext__()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if inspect.iscoroutine(awaitable):
        return awaitable
    if not inspect.isawaitable(awaitable):
        raise TypeError(f"expected a coroutine or awaitable, got a {type(awaitable).__name__}")
    return _await(awaitable)


def resolve(value: Any) -> Any:
    """``value``, awaited on the container's loop first if it is awaitable (a coroutine's result)."""
    return run(value) if inspect.isawaitable(value) else value


def is_coroutine_function(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` makes a coroutine: ``async def``, also behind partials and wrappers."""
    while isinstance(function, functools.partial):
        function = function.func
    function = inspect.unwrap(function)
    if inspect.iscoroutinefunction(function):
        return True
    # A callable object with an ``async def __call__`` (not a class: calling that makes an instance).
    return not inspect.isclass(function) and inspect.iscoroutinefunction(type(function).__call__)

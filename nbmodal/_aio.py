"""``.aio``: the awaitable twin of each blocking method of the public API, as in Modal.

The notebook-facing API is synchronous; ``method.aio(...)`` runs the same blocking method on a
thread and awaits it, so a coroutine (or a notebook cell with top-level ``await``) can wait for many
calls at once. A method that returns an iterator (``remote_gen``, ``map``, ``Queue.iterate``) has an
``.aio`` that is an async iterator instead: ``async for x in f.map.aio(xs)``; each item is fetched on a
thread, and stopping early closes the blocking iterator (which stops its remote work).

    class Dict:
        @WithAio
        def get(self, key): ...

    value = await d.get.aio("k")
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, Literal, ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Each pending ``.aio`` call holds a thread while its blocking twin waits (on the agent, mostly), so
# ``asyncio.gather`` over many calls needs more threads than the default executor's few.
MAX_AIO_THREADS = 64

_DONE = object()
_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_AIO_THREADS, thread_name_prefix="nbmodal-aio")
        return _executor


def _submit(function: Callable[..., Any], *args: Any) -> Future:
    """Run ``function`` on an aio thread, with the caller's context variables."""
    return _threads().submit(contextvars.copy_context().run, function, *args)


async def call_in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await ``function(*args, **kwargs)``, run on a thread (the event loop keeps running)."""
    return await asyncio.wrap_future(_submit(functools.partial(function, *args, **kwargs)))


async def iterate_in_thread(make_iterable: Callable[[], Iterable[Any]]) -> AsyncIterator[Any]:
    """An async iterator over the blocking iterable ``make_iterable()``, each item fetched on a thread.

    Stopping early (``break``, an exception, a cancel) closes the blocking iterator when its current
    item is in, so a generator's ``finally`` (a map's cancel of its batches) still runs.
    """
    iterator = await call_in_thread(lambda: iter(make_iterable()))
    pending: Future | None = None
    try:
        while True:
            pending = _submit(next, iterator, _DONE)
            item = await asyncio.wrap_future(pending)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            if pending is not None and not pending.done():  # a thread is still in next(): close after it
                pending.add_done_callback(lambda _: _close_quietly(close))
            else:
                _submit(_close_quietly, close)


def _close_quietly(close: Callable[[], Any]) -> None:
    try:
        close()
    except Exception:  # nobody waits for this close: log what went wrong instead
        log.exception("closing an iterator behind .aio failed")


async def _gathered(value: Any) -> Any:
    """An async iterable argument (Modal's ``map.aio`` takes them) as a list; anything else as it is."""
    if hasattr(value, "__aiter__") and not hasattr(value, "__iter__"):
        return [item async for item in value]
    return value


class WithAio:
    """A blocking method that also offers ``.aio``, its awaitable twin (as in Modal).

    ``iterates``: the method returns an iterator, and ``.aio`` is an async iterator over it (by default,
    when the method is a generator function). ``binding``: "instance" for a method, "class" for a
    classmethod, "static" for a staticmethod.

    Example::

        class Queue:
            @WithAio
            def put(self, value): ...

            @WithAio.iterating
            def iterate(self): ...

        await q.put.aio(1)
        async for item in q.iterate.aio(): ...
    """

    def __init__(self, method: Callable, *, iterates: bool | None = None,
                 binding: Literal["instance", "class", "static"] = "instance") -> None:
        self._method = method
        self._iterates = inspect.isgeneratorfunction(method) if iterates is None else iterates
        self._binding = binding
        functools.update_wrapper(self, method)  # a descriptor that wraps, not a callable

    @classmethod
    def iterating(cls, method: Callable) -> WithAio:
        """For a method that returns an iterator (not a generator function, say a map's runner)."""
        return cls(method, iterates=True)

    @classmethod
    def on_class(cls, method: Callable) -> WithAio:
        """For a method of the class itself (a classmethod): ``Dict.delete.aio``, say."""
        return cls(method, binding="class")

    @classmethod
    def static(cls, method: Callable) -> WithAio:
        """For a staticmethod: ``FunctionCall.gather.aio``."""
        return cls(method, binding="static")

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if self._binding == "static":
            bound = functools.partial(self._method)
        elif self._binding == "class":
            bound = functools.partial(self._method, owner if owner is not None else type(instance))
        elif instance is None:
            return self  # the method on the class: ``Dict.get(d, key)`` still works, through __call__
        else:
            bound = functools.partial(self._method, instance)
        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):  # no __wrapped__: its
            setattr(bound, attribute, getattr(self._method, attribute, None))  # signature stays the bound one
        # Its own partial, not ``bound``: ``bound.aio`` holding ``bound`` is a cycle that only the garbage
        # collector frees, made on every ``f.remote`` (its collections then land in later calls).
        bound.aio = self._aio_of(functools.partial(bound.func, *bound.args))  # type: ignore[attr-defined]
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)

    def _aio_of(self, bound: Callable) -> Callable:
        if self._iterates:
            def aio_iterator(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                async def items() -> AsyncIterator[Any]:
                    ready = [await _gathered(arg) for arg in args]
                    async for item in iterate_in_thread(lambda: bound(*ready, **kwargs)):
                        yield item

                return items()

            return aio_iterator

        async def aio(*args: Any, **kwargs: Any) -> Any:
            return await call_in_thread(bound, *args, **kwargs)

        return aio


class SyncAndAsyncContext(Generic[T]):
    """A context manager for ``with`` and ``async with`` alike; ``async with`` enters and leaves on a thread."""

    def __init__(self, manager: contextlib.AbstractContextManager[T]) -> None:
        self._manager = manager

    def __enter__(self) -> T:
        return self._manager.__enter__()

    def __exit__(self, *exc_info: Any) -> bool | None:
        return self._manager.__exit__(*exc_info)

    async def __aenter__(self) -> T:
        return await call_in_thread(self._manager.__enter__)

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await call_in_thread(self._manager.__exit__, *exc_info)


def sync_and_async_context(generator_function: Callable[P, Iterator[T]]) -> Callable[P, SyncAndAsyncContext[T]]:
    """``contextlib.contextmanager`` whose blocks may also be ``async with`` (Modal's ``async with app.run():``).

    Example::

        @sync_and_async_context
        def run(self):
            yield self
    """
    manager = contextlib.contextmanager(generator_function)

    @functools.wraps(generator_function)
    def make(*args: P.args, **kwargs: P.kwargs) -> SyncAndAsyncContext[T]:
        return SyncAndAsyncContext(manager(*args, **kwargs))

    return make

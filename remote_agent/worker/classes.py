"""Classes (``@app.cls``) inside a container: one instance per class and parameters, kept warm.

``@nbmodal.enter()`` methods run once, when a container first creates the
instance; ``@nbmodal.exit()`` methods run when the container shuts down
normally. The instance lives as long as its container, so state loaded in
``enter`` (a model, a connection) serves every input that container gets.
Hooks and methods may be ``async def``: they run on the container's event loop
(``event_loop.py``), the same loop for every input, so an async client made in
``enter`` keeps working in the methods.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_instances: dict[str, Any] = {}


def call_method(cls: type, parameters: dict[str, Any], method: str, key: str, *args: Any, **kwargs: Any) -> Any:
    instance = _instance(cls, parameters, key)
    return getattr(instance, method)(*args, **kwargs)  # an async method's coroutine: the caller awaits it


def _instance(cls: type, parameters: dict[str, Any], key: str) -> Any:
    # Imported here: the notebook imports this module (its pickles name call_method), never the loop.
    from remote_agent.worker import event_loop

    instance = _instances.get(key)
    if instance is None:
        instance = cls.__new__(cls)  # type: ignore[call-overload]  # no __init__: parameters are set below
        for name, value in parameters.items():
            setattr(instance, name, value)
        for name in _marked(cls, "enter"):
            event_loop.resolve(getattr(instance, name)())  # an async hook finishes before any input runs
        _instances[key] = instance
    return instance


def prepare_instance(function: Callable[..., Any]) -> None:
    """Create the instance a ``call_method`` partial calls (running its ``@enter`` hooks), if not yet made.

    An async batch does this before its inputs start on the event loop, where a hook can't be waited for.
    """
    if isinstance(function, functools.partial) and function.func is call_method:
        cls, parameters, _, key = function.args[:4]
        _instance(cls, parameters, key)


def target_method(function: Callable[..., Any]) -> Callable[..., Any] | None:
    """The user's method a ``call_method`` partial calls (None for any other callable).

    A map's batch asks it whether a class's method is ``async def`` before running the inputs.
    """
    if isinstance(function, functools.partial) and function.func is call_method and len(function.args) >= 3:
        cls, _, method = function.args[:3]
        return getattr(cls, method, None)
    return None


def run_exit_hooks() -> None:
    """Before a container exits: each instance's ``@exit`` methods (an async one on the container's loop)."""
    from remote_agent.worker import event_loop

    for instance in _instances.values():
        for name in _marked(type(instance), "exit"):
            try:
                event_loop.resolve(getattr(instance, name)())
            except Exception:
                log.exception("%s.%s failed", type(instance).__name__, name)
    _instances.clear()


def _marked(cls: type, role: str) -> list[str]:
    return [name for name in dir(cls) if getattr(getattr(cls, name, None), "_nbmodal_role", None) == role]

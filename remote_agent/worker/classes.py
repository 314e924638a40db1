"""Classes (``@app.cls``) inside a container: one instance per class and parameters, kept warm.

``@nbmodal.enter()`` methods run once, when a container first creates the
instance; ``@nbmodal.exit()`` methods run when the container shuts down
normally. The instance lives as long as its container, so state loaded in
``enter`` (a model, a connection) serves every input that container gets.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_instances: dict[str, Any] = {}


def call_method(cls: type, parameters: dict[str, Any], method: str, key: str, *args: Any, **kwargs: Any) -> Any:
    instance = _instances.get(key)
    if instance is None:
        instance = cls.__new__(cls)  # type: ignore[call-overload]  # no __init__: parameters are set below
        for name, value in parameters.items():
            setattr(instance, name, value)
        for name in _marked(cls, "enter"):
            getattr(instance, name)()
        _instances[key] = instance
    return getattr(instance, method)(*args, **kwargs)


def run_exit_hooks() -> None:
    """Before a container exits: each instance's ``@exit`` methods."""
    for instance in _instances.values():
        for name in _marked(type(instance), "exit"):
            try:
                getattr(instance, name)()
            except Exception:
                log.exception("%s.%s failed", type(instance).__name__, name)
    _instances.clear()


def _marked(cls: type, role: str) -> list[str]:
    return [name for name in dir(cls) if getattr(getattr(cls, name, None), "_nbmodal_role", None) == role]

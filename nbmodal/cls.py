"""``@app.cls``: classes whose instances live in warm containers, named as in Modal.

    @app.cls(gpu="any")
    class Model:
        size: int = nbmodal.parameter(default=1)

        @nbmodal.enter()
        def load(self):
            self.weights = load_weights(self.size)   # once per container

        @nbmodal.method()
        def predict(self, x):
            return self.weights @ x

    Model(size=2).predict.remote(x)        # or .map(xs), .spawn(x), .local(x)

Each set of parameter values gets its own pool of containers; a container
creates the instance once (running ``@enter`` methods) and keeps it for every
input it serves; ``@exit`` methods run when the container stops normally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Any

from nbmodal import serialization
from remote_agent.worker.classes import call_method

_NO_DEFAULT = object()


def _role(role: str) -> Callable[[Callable], Callable]:
    def mark(fn: Callable) -> Callable:
        fn._nbmodal_role = role  # type: ignore[attr-defined]
        return fn

    return mark


def enter() -> Callable[[Callable], Callable]:
    """Run this method once per container, when the instance is created there."""
    return _role("enter")


def exit() -> Callable[[Callable], Callable]:  # noqa: A001 - Modal's name
    """Run this method when the container stops normally."""
    return _role("exit")


def method() -> Callable[[Callable], Callable]:
    """Expose this method as ``Model(...).name.remote()`` / ``.map()``."""
    return _role("method")


class _Parameter:
    def __init__(self, default: Any) -> None:
        self.default = default


def parameter(*, default: Any = _NO_DEFAULT) -> Any:
    """A field set from ``Model(name=value)``; instances with other values run in other containers."""
    return _Parameter(default)


class Cls:
    """What ``@app.cls`` returns: call it with parameters to get an instance handle."""

    def __init__(self, user_cls: type, function_options: dict[str, Any]) -> None:
        self.user_cls = user_cls
        self.options = function_options
        self.parameters = {name: value.default for name, value in vars(user_cls).items()
                           if isinstance(value, _Parameter)}
        self.methods = [name for name, value in vars(user_cls).items()
                        if getattr(value, "_nbmodal_role", None) == "method"]

    def __call__(self, **parameters: Any) -> ClsInstance:
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise TypeError(f"{self.user_cls.__name__} has no parameter {', '.join(sorted(unknown))} "
                            f"(its parameters: {', '.join(self.parameters) or 'none'})")
        values = {**self.parameters, **parameters}
        missing = [name for name, value in values.items() if value is _NO_DEFAULT]
        if missing:
            raise TypeError(f"{self.user_cls.__name__}() needs a value for {', '.join(missing)}")
        return ClsInstance(self, values)

    def __repr__(self) -> str:
        return f"<nbmodal.Cls {self.user_cls.__name__}>"


class ClsInstance:
    """``Model(param=...)``: its ``@method``s are Functions running on the instance's containers."""

    def __init__(self, cls: Cls, parameters: dict[str, Any]) -> None:
        from nbmodal.app import Function

        self._cls = cls
        self._parameters = parameters
        # The instance's identity: the class's code and the parameter values. It keys the
        # instance inside a container, and (as an env value) its own pool of containers.
        key = hashlib.sha256(serialization.dumps(cls.user_cls) + repr(sorted(parameters.items())).encode())
        self._key = key.hexdigest()[:24]
        for name in cls.methods:
            function = Function(partial(call_method, cls.user_cls, parameters, name, self._key), None,
                                name=f"{cls.user_cls.__name__}.{name}", **cls.options)
            function.spec.env["NBMODAL_CLS_INSTANCE"] = self._key
            function.local = partial(self._local, name)  # type: ignore[method-assign]  # runs on a local instance
            setattr(self, name, function)

    def _local(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run the method here, on a local instance (with ``@enter`` run first)."""
        user_cls: Any = self._cls.user_cls
        instance = user_cls.__new__(user_cls)
        for key, value in self._parameters.items():
            setattr(instance, key, value)
        for attr in dir(instance):
            if getattr(getattr(type(instance), attr, None), "_nbmodal_role", None) == "enter":
                getattr(instance, attr)()
        return getattr(instance, name)(*args, **kwargs)

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self._parameters.items())
        return f"<{self._cls.user_cls.__name__}({values}) on nbmodal>"

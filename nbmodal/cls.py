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
    Model.with_options(gpu="H100")(size=2).predict.remote(x)

Each set of parameter values gets its own pool of containers; a container
creates the instance once (running ``@enter`` methods) and keeps it for every
input it serves; ``@exit`` methods run when the container stops normally.
Methods, hooks and parameters may come from base classes. The options are
checked when the class is decorated, against the keyword table of
``nbmodal/_function_options.py`` (the same as ``@app.function``'s).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from nbmodal import serialization
from remote_agent.worker.batching import batched_options
from remote_agent.worker.classes import call_method

if TYPE_CHECKING:
    from nbmodal.app import App

_NO_DEFAULT = object()


def _role(role: str, fn: Callable | None) -> Any:
    def mark(fn: Callable) -> Callable:
        fn._nbmodal_role = role  # type: ignore[attr-defined]
        return fn

    # Modal asks for parentheses; the bare decorator can't mean anything else, so it is accepted.
    return mark(fn) if callable(fn) else mark


def enter(_warn_parentheses_missing: Callable | None = None, *, snap: bool = False) -> Any:
    """Run this method once per container, when the instance is created there.

    ``snap`` (Modal's memory snapshots) changes nothing here: the method runs once per container either way.

    Example::

        @nbmodal.enter()
        def load(self):
            self.model = load_model()
    """
    return _role("enter", _warn_parentheses_missing)


def exit(_warn_parentheses_missing: Callable | None = None) -> Any:  # noqa: A001 - Modal's name
    """Run this method when the container stops normally.

    Example::

        @nbmodal.exit()
        def close(self):
            self.connection.close()
    """
    return _role("exit", _warn_parentheses_missing)


def method(_warn_parentheses_missing: Callable | None = None, *, is_generator: bool | None = None) -> Any:
    """Expose this method as ``Model(...).name.remote()`` / ``.map()`` / ``.remote_gen()``.

    ``is_generator`` changes nothing here: a generator method is called with ``.remote_gen()``.

    Example::

        @nbmodal.method()
        def predict(self, x):
            return self.model(x)
    """
    return _role("method", _warn_parentheses_missing)


class _Parameter:
    def __init__(self, default: Any, init: bool) -> None:
        self.default = default
        self.init = init


def parameter(*, default: Any = _NO_DEFAULT, init: bool = True) -> Any:
    """A field set from ``Model(name=value)``; instances with other values run in other containers.

    ``init=False``: not set from the constructor; every instance gets ``default``.

    Example::

        model_name: str = nbmodal.parameter(default="small")
    """
    return _Parameter(default, init)


def _members(user_cls: type) -> dict[str, Any]:
    """The class's attributes with those of its bases (nearest definition wins), as ``dir`` sees them."""
    members: dict[str, Any] = {}
    for klass in reversed(user_cls.__mro__):
        members.update(vars(klass))
    return members


class Cls:
    """What ``@app.cls`` returns: call it with parameters to get an instance handle.

    Example::

        Model(size=2).predict.remote(x)
        Model.with_options(gpu="H100", timeout=600)(size=2).predict.remote(x)
    """

    def __init__(self, user_cls: type, function_options: dict[str, Any], app: App | None = None,
                 max_concurrent_inputs: int | None = None, batching: dict[str, Any] | None = None) -> None:
        from nbmodal.app import Function

        self.user_cls = user_cls
        self.options = dict(function_options)
        self.app = app
        members = _members(user_cls)
        self._fields = {name: value for name, value in members.items() if isinstance(value, _Parameter)}
        self.parameters = {name: value.default for name, value in self._fields.items() if value.init}
        # As in Modal, @batched on a method stands in for @method.
        self.methods = [name for name, value in members.items()
                        if getattr(value, "_nbmodal_role", None) == "method" or batched_options(value) is not None
                        or getattr(value, "_nbmodal_web", None) is not None]  # web endpoints (nbmodal/web.py)
        # @nbmodal.concurrent on the class (or with_concurrency) lets a container take that many inputs at once.
        self.max_concurrent_inputs = max_concurrent_inputs or getattr(user_cls, "_nbmodal_max_inputs", None)
        self.batching = batching
        # The options are checked now, at decoration, as a function's are: a bad gpu=, volume path,
        # image or cpu= fails here rather than at the first instance.
        Function(_no_call, None, name=f"{user_cls.__name__}", **self.options)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        # `class Child(Base)` where Base is decorated subclasses Base's own class (decorate Child to run it).
        return (self.user_cls,)

    def __call__(self, **parameters: Any) -> ClsInstance:
        unknown = set(parameters) - set(self.parameters)
        if unknown:
            raise TypeError(f"{self.user_cls.__name__} has no parameter {', '.join(sorted(unknown))} "
                            f"(its parameters: {', '.join(self.parameters) or 'none'})")
        values = {**self.parameters, **parameters}
        missing = [name for name, value in values.items() if value is _NO_DEFAULT]
        if missing:
            raise TypeError(f"{self.user_cls.__name__}() needs a value for {', '.join(missing)}")
        fixed = {name: field.default for name, field in self._fields.items()
                 if not field.init and field.default is not _NO_DEFAULT}
        return ClsInstance(self, {**fixed, **values})

    def with_options(self, **options: Any) -> Cls:
        """The same class with other options (any keyword of ``@app.cls``; given ones replace the class's).

        Example::

            Big = Model.with_options(gpu="A100-80GB", timeout=1200)
            Big(size=3).predict.remote(x)
        """
        from nbmodal._function_options import CONCURRENT_INPUTS, function_keywords

        keywords = function_keywords(options, where="Cls.with_options", on="cls")
        concurrent_inputs = keywords.pop(CONCURRENT_INPUTS, None)
        return Cls(self.user_cls, {**self.options, **keywords}, self.app,
                   concurrent_inputs or self.max_concurrent_inputs, self.batching)

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        """The same class with each container taking up to ``max_inputs`` inputs at once, as
        ``@nbmodal.concurrent`` on the class does (``target_inputs``, an autoscaler hint, changes nothing here).

        Example::

            Model.with_concurrency(max_inputs=8)().predict.map(xs)
        """
        if not isinstance(max_inputs, int) or max_inputs < 1:
            raise ValueError(f"with_concurrency(max_inputs={max_inputs!r}): max_inputs must be a whole number "
                             f"of at least 1")
        return Cls(self.user_cls, self.options, self.app, max_inputs, self.batching)

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        """The same class with its methods' inputs batched as ``@nbmodal.batched(max_batch_size=, wait_ms=)``
        batches them.

        Example::

            Model.with_batching(max_batch_size=32, wait_ms=100)().embed.map(texts)
        """
        from nbmodal._runtime.batching import batched

        batched(max_batch_size=max_batch_size, wait_ms=wait_ms)  # Modal's limits, checked as @batched checks them
        return Cls(self.user_cls, self.options, self.app, self.max_concurrent_inputs,
                   {"max_batch_size": max_batch_size, "wait_ms": wait_ms})

    def hydrate(self, client: Any = None) -> Cls:
        """Accepted for Modal code: a class here needs no server-side identity."""
        return self

    @classmethod
    def from_name(cls, app_name: str, name: str, *, namespace: Any = None,
                  environment_name: str | None = None) -> Cls:
        """The class ``name`` of the App ``app_name``: defined in this process, else deployed on an agent
        (``Model(**params).method.remote()`` then runs the deployed code); ``NotFoundError`` listing the
        deployed apps or classes otherwise.

        Example::

            Model = nbmodal.Cls.from_name("inference", "Model")
            Model(size=2).predict.remote(x)
        """
        from nbmodal.app import registered_or_deployed

        return registered_or_deployed(app_name, name, "classes")

    def __repr__(self) -> str:
        return f"<nbmodal.Cls {self.user_cls.__name__}>"


def _no_call(*args: Any, **kwargs: Any) -> None:
    """Stands for a class's methods when its options are checked at decoration; never runs."""


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
            call = partial(call_method, cls.user_cls, parameters, name, self._key)
            if cls.batching:
                _apply_batching(call, getattr(cls.user_cls, name), cls.batching)
            function = Function(call, cls.app, name=f"{cls.user_cls.__name__}.{name}", **cls.options)
            if cls.max_concurrent_inputs:
                function.max_inputs = cls.max_concurrent_inputs
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


def _apply_batching(call: partial, user_method: Callable, batching: dict[str, Any]) -> None:
    """``with_batching``: the method's calls batched as ``@nbmodal.batched`` batches a function's.

    The mark goes on this instance's call (the class's method itself stays as it is), where the client's
    batcher and the container's batch runner both look for it."""
    from remote_agent.worker.batching import BATCHED_ATTRIBUTE, check_batchable

    check_batchable(partial(user_method, None))  # one list per parameter, `self` aside
    setattr(call, BATCHED_ATTRIBUTE, (batching["max_batch_size"], batching["wait_ms"]))

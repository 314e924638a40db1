"""``App``, ``Function`` and ``FunctionCall``, named as in Modal.

In a notebook there is nothing to deploy: a decorated function runs on the
agent whenever it is called with ``.remote()``; ``with app.run():`` is
accepted for code written for Modal and does nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar

from nbmodal import serialization
from nbmodal._runtime.connection import locate_run
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.fanout import DEFAULT_MAX_CONTAINERS, MapRunner, Retries
from nbmodal._runtime.invocation import (
    RunOptions,
    RunTarget,
    batch_request,
    call_request,
    container_spec,
    follow,
    follower,
    resolve_target,
    submit,
)
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal.config import DEFAULT_CANCEL_GRACE_S
from nbmodal.exceptions import RunLostError
from nbmodal.output import default_sink
from nbmodal.results import function_result, raise_for_state
from nbmodal_wire import pb
from nbmodal_wire.gpu_request import parse_gpu_request
from nbmodal_wire.names import check_mount_path

P = ParamSpec("P")
R = TypeVar("R")


class _WithAio:
    """A blocking method that also offers ``.aio``, its awaitable twin (as in Modal)."""

    def __init__(self, method: Callable) -> None:
        self._method = method
        functools.update_wrapper(self, method)  # type: ignore[arg-type]  # a descriptor that wraps, not a callable

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        bound = functools.partial(self._method, instance)

        async def aio(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(bound, *args, **kwargs)

        bound.aio = aio  # type: ignore[attr-defined]
        return bound


class App:
    """A named group of functions.

    Example::

        app = nbmodal.App("sweep")

        @app.function(timeout=600)
        def train(lr: float) -> float:
            ...

        loss = train.remote(0.1)
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.registered_functions: dict[str, Function] = {}

    def function(self, _fn: Callable | None = None, *, timeout: float | None = None,
                 name: str | None = None, host: str | None = None, gpu: str | list[str] | None = None,
                 volumes: dict[str, Any] | None = None, retries: int | Retries | None = None,
                 max_containers: int | None = None, scaledown_window: float | None = None,
                 min_containers: int = 0, buffer_containers: int = 0, cpu: float = 0.0, memory: int = 0,
                 image: Any = None) -> Any:
        """Decorate a function so that ``.remote()`` runs it on an agent (and ``.map()`` fans it out).

        ``host`` names a configured SSH host (``nbmodal host add``); by default
        runs go to the local agent, or are placed among the configured hosts.
        ``gpu`` asks for whole GPUs: ``"H100"``, ``"A100-80GB:2"``, ``"any"``, or
        a list of fallbacks in order of preference. ``volumes`` mounts volumes:
        ``{"/ckpt": nbmodal.Volume.from_name("ckpt")}`` (or the volume's name).
        ``retries`` (an int or ``nbmodal.Retries``) retries failed inputs of a map;
        ``max_containers`` caps how many containers a map uses at once;
        ``scaledown_window`` is how many seconds its idle containers stay warm;
        ``min_containers`` keeps that many up once it has run; ``buffer_containers``
        keeps that many idle ones ready while it is in use. ``cpu`` (cores) and
        ``memory`` (MiB) are reserved for each container: its cores are its own (it is
        pinned to them), and runs wait while the host has no room. ``image`` (an
        ``nbmodal.Image``) is the environment it runs in, built on the host at first use.
        """

        def wrap(fn: Callable[P, R]) -> Function[P, R]:
            function = Function(fn, self, timeout=timeout, name=name, host=host, gpu=gpu, volumes=volumes,
                                retries=retries, max_containers=max_containers, scaledown_window=scaledown_window,
                                min_containers=min_containers, buffer_containers=buffer_containers,
                                cpu=cpu, memory=memory, image=image)
            self.registered_functions[function.name] = function
            return function

        return wrap(_fn) if _fn is not None else wrap

    def cls(self, _cls: type | None = None, **options: Any) -> Any:
        """Decorate a class whose instances live in warm containers (see ``nbmodal.cls``).

        Takes the same options as ``function``: ``gpu``, ``volumes``, ``host``, ``timeout``,
        ``retries``, ``max_containers``.
        """
        from nbmodal.cls import Cls

        def wrap(user_cls: type) -> Cls:
            return Cls(user_cls, options)

        return wrap(_cls) if _cls is not None else wrap

    @contextlib.contextmanager
    def run(self) -> Iterator[App]:
        """Accepted for Modal code; functions here need no ephemeral app."""
        yield self


class Function(Generic[P, R]):
    def __init__(self, fn: Callable[P, R], app: App | None = None, *, timeout: float | None = None,
                 name: str | None = None, host: str | None = None, gpu: str | list[str] | None = None,
                 volumes: dict[str, Any] | None = None, retries: int | Retries | None = None,
                 max_containers: int | None = None, scaledown_window: float | None = None,
                 min_containers: int = 0, buffer_containers: int = 0, cpu: float = 0.0, memory: int = 0,
                 image: Any = None) -> None:
        from nbmodal.image import Image

        if image is not None and not isinstance(image, Image):
            raise TypeError(f"image= takes an nbmodal.Image, not a {type(image).__name__}")
        self.image = image
        self.raw_f = fn
        self.host = host
        self.retries = retries
        self.max_containers = max_containers
        self.max_inputs = getattr(fn, "_nbmodal_max_inputs", 1)  # @nbmodal.concurrent
        self.gpu = ",".join(gpu) if isinstance(gpu, (list, tuple)) else (gpu or "")
        parse_gpu_request(self.gpu)  # an unknown type is an error here, at decoration
        mounts = {check_mount_path(getattr(v, "name", v), path): getattr(v, "name", v)
                  for path, v in (volumes or {}).items()}
        self.spec = container_spec(self.gpu, mounts, cpu, memory)
        self.spec.scaledown_window_s = scaledown_window or 0.0
        self.spec.min_containers, self.spec.buffer_containers = min_containers, buffer_containers
        self.app = app
        self.timeout = timeout or 0.0
        self.name: str = name or str(getattr(fn, "__qualname__", repr(fn)))
        functools.update_wrapper(self, fn)

    def run_options(self, detach: bool = False) -> RunOptions:
        """The options of each run of this function (a map's batches get them too)."""
        return RunOptions(timeout_s=self.timeout, detach=detach)

    def resolve(self) -> RunTarget:
        """Where its next run goes, ready to run there (its image built there first)."""
        return resolve_target(host=self.host, spec=self.spec, image=self.image, sink=default_sink())

    @_WithAio
    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function on the agent and return its result (its prints stream here)."""
        target = self.resolve()
        request = call_request(target, self.name, (self.raw_f, args, kwargs), self.run_options())
        finished, transfer = follow(target, request, default_sink())
        raise_for_state(finished)
        return function_result(finished, transfer.fetch)

    def remote_gen(self, *args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
        """Call a generator function on the agent; its items stream back as they are produced.

        Example::

            for step, loss in train_steps.remote_gen(cfg):
                print(step, loss)
        """
        target = self.resolve()
        request = call_request(target, self.name, (self.raw_f, args, kwargs), self.run_options(), generator=True)
        events: queue.Queue = queue.Queue()
        run_follower = follower(target, request, _QueueSink(events))
        outcome: dict[str, Any] = {}

        def follow_items() -> None:
            try:
                outcome["finished"] = run_follower.start(request)
            except BaseException as exc:  # reported in the caller's thread
                outcome["error"] = exc
            events.put(None)

        threading.Thread(target=follow_items, name=f"nbmodal-gen-{self.name}", daemon=True).start()
        sink = default_sink()
        try:
            while (event := events.get()) is not None:
                kind, payload = event
                if kind == "item":
                    yield target.transfer.fetch(payload.blob) if payload.blob else serialization.loads(payload.value)
                else:
                    getattr(sink, kind)(*payload)
        except (KeyboardInterrupt, GeneratorExit):
            if run_follower.run_id:
                target.client.cancel(run_follower.run_id)  # the consumer stopped: so does the generator
            raise
        finally:
            sink.close()
        if "error" in outcome:
            raise outcome["error"]
        raise_for_state(outcome["finished"])

    def map(self, *iterables: Any, order_outputs: bool = True, return_exceptions: bool = False) -> MapRunner:
        """Call the function on each set of arguments, in parallel containers; iterate it for the results.

        Each input's output is kept: ``run.logs(i)`` once the map has run input ``i``.

        Example::

            run = train.map([1e-3, 3e-4, 1e-4])
            losses = list(run)
            print(run.logs(0))
        """
        inputs: list[tuple[tuple, dict]] = [(args, {}) for args in zip(*iterables)]
        return MapRunner(self, inputs, order_outputs, return_exceptions)

    def starmap(self, input_iterator: Any, *, kwargs: dict | None = None, order_outputs: bool = True,
                return_exceptions: bool = False) -> MapRunner:
        """Like ``map``, with each item a tuple of arguments."""
        inputs: list[tuple[tuple, dict]] = [(tuple(args), dict(kwargs or {})) for args in input_iterator]
        return MapRunner(self, inputs, order_outputs, return_exceptions)

    def spawn_map(self, *iterables: Any) -> None:
        """Start the function on each input and return at once; the runs belong to the agent (they go
        on if this kernel stops). Use it for effects (write to a Volume, a Dict, a Queue)."""
        inputs: list[tuple[int, tuple, dict]] = [(index, args, {}) for index, args in enumerate(zip(*iterables))]
        if not inputs:
            return
        target = self.resolve()
        batches = min(len(inputs), self.max_containers or DEFAULT_MAX_CONTAINERS)  # that many containers at once
        for part in range(batches):
            submit(target, batch_request(target, self.name, self.raw_f, inputs[part::batches], self.max_inputs,
                                         self.run_options(detach=True)))

    def for_each(self, *iterables: Any, ignore_exceptions: bool = False) -> None:
        """Run the function on each input for its effects; waits for all of them."""
        for _ in self.map(*iterables, order_outputs=False, return_exceptions=ignore_exceptions):
            pass

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function here, in this process."""
        return self.raw_f(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.raw_f(*args, **kwargs)

    @_WithAio
    def spawn(self, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        """Start the function on the agent and return at once; ``.get()`` waits for the result."""
        target = self.resolve()
        info = submit(target, call_request(target, self.name, (self.raw_f, args, kwargs),
                                           self.run_options(detach=True)))
        return FunctionCall(info.run_id)

    def __repr__(self) -> str:
        return f"<nbmodal.Function {self.name}>"


class _QueueSink:
    """Hands a run's events to the thread that consumes a generator's items."""

    def __init__(self, events: queue.Queue) -> None:
        self.events = events

    def output(self, stream: int, text: str) -> None:
        self.events.put(("output", (stream, text)))

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        self.events.put(("display", (data, metadata, execute_result)))

    def notice(self, text: str) -> None:
        self.events.put(("notice", (text,)))

    def item(self, item: pb.Item) -> None:
        self.events.put(("item", item))

    def close(self) -> None:
        pass


class FunctionCall(Generic[R]):
    """A function run started with ``.spawn()``; its id is the agent's run id."""

    def __init__(self, object_id: str) -> None:
        self.object_id = object_id
        self._seen_seq = 0
        self._finished: pb.RunFinished | None = None
        self._result: Any = None

    @classmethod
    def from_id(cls, function_call_id: str) -> FunctionCall:
        return cls(function_call_id)

    @_WithAio
    def get(self, timeout: float | None = None) -> R:
        """Wait for the result; output not shown before is shown here.

        Raises ``TimeoutError`` if the run hasn't finished within ``timeout`` seconds
        (the run goes on).
        """
        finished = self._finished
        if finished is None:
            connection = locate_run(self.object_id)
            follower = RunFollower(connection, default_sink(), DEFAULT_CANCEL_GRACE_S, cancel_on_interrupt=False)
            try:
                finished = follower.attach(self.object_id, self._seen_seq, timeout=timeout)
            except TimeoutError:
                raise TimeoutError(f"function call {self.object_id} has not finished after {timeout:g} s") from None
            finally:
                self._seen_seq = follower.last_seq
            if finished is None:  # a followed attach ends with the run's end (or raises)
                raise RunLostError(f"function call {self.object_id} ended without a result; see `nbmodal runs`")
            self._finished = finished
            raise_for_state(finished)
            # A spawned call's result is kept by the agent until fetched here.
            transfer = BlobTransfer.for_connection(connection, follower.client)
            self._result = function_result(finished, transfer.fetch)
        raise_for_state(finished)
        return self._result

    @_WithAio
    def cancel(self, terminate_containers: bool = False) -> None:
        """Stop the run: KeyboardInterrupt inside it (or kill its container at once)."""
        locate_run(self.object_id).client().cancel(self.object_id, force=terminate_containers)

    @staticmethod
    def gather(*calls: FunctionCall) -> list[Any]:
        """Wait for several calls; results in the order given."""
        return [call.get() for call in calls]

    def __repr__(self) -> str:
        return f"<nbmodal.FunctionCall {self.object_id}>"

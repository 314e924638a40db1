"""``App``, ``Function`` and ``FunctionCall``, named as in Modal.

In a notebook there is nothing to deploy: a decorated function runs on the
agent whenever it is called with ``.remote()``; ``with app.run():`` is
accepted for code written for Modal and does nothing more.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

from nbmodal import _run_blocks, serialization
from nbmodal._aio import WithAio as _WithAio  # .aio twins: awaitables, and async iterators for iterators
from nbmodal._aio import sync_and_async_context
from nbmodal._local_entrypoint import LocalEntrypoint
from nbmodal._runtime.batching import batched_size, remote_batcher
from nbmodal._runtime.connection import locate_run
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.fanout import DEFAULT_MAX_CONTAINERS, MapRunner, Retries, known_length, map_inputs, starmap_inputs
from nbmodal._runtime.invocation import (
    DEFAULT_FUNCTION_TIMEOUT_S,
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
from nbmodal._runtime.pickle_state import picklable_state, restored_state
from nbmodal._runtime.resource_limits import CpuRequest, MemoryRequest
from nbmodal._runtime.retrying import call_with_retries
from nbmodal._runtime.stdin_answers import StdinAnswers
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal.config import DEFAULT_CANCEL_GRACE_S
from nbmodal.exceptions import InvalidGpuError, RunLostError
from nbmodal.gpu import to_gpu_string
from nbmodal.output import OutputSink, default_sink
from nbmodal.results import function_result, raise_for_state, rebuild_error_record
from nbmodal_wire import pb
from nbmodal_wire.gpu_request import GpuRequestError, parse_gpu_request
from nbmodal_wire.names import check_mount_path
from remote_agent.worker.batching import call_as_batch_of_one

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """A named group of functions.

    Example::

        app = nbmodal.App("sweep")

        @app.function(timeout=600)
        def train(lr: float) -> float:
            ...

        loss = train.remote(0.1)
    """

    def __init__(self, name: str | None = None, *, image: Any = None, secrets: Sequence[Any] = (),
                 volumes: dict[str, Any] | None = None, include_source: bool | None = None) -> None:
        """``image``, ``secrets`` and ``volumes`` are the defaults of its functions and classes (a function's
        own ``secrets`` and ``volumes`` add to them); ``include_source`` is how nbmodal always works (code
        travels with each call)."""
        from nbmodal.secret import merged, secret_sources

        secret_sources(secrets, "App")  # anything but a Secret is an error here, at definition
        self.secrets = merged(secrets)
        self.name = name
        if name:
            _APPS_BY_NAME[name] = self  # what App.lookup and Function/Cls.from_name find in this process
        self.image = image
        self.volumes = dict(volumes or {})
        self.registered_functions: dict[str, Function] = {}
        self.registered_classes: dict[str, Any] = {}
        self.registered_entrypoints: dict[str, LocalEntrypoint] = {}

    def function(self, _warn_parentheses_missing: Callable | None = None, **options: Any) -> Any:
        """Decorate a function so that ``.remote()`` runs it on an agent (and ``.map()`` fans it out).

        Takes every keyword of Modal's ``App.function`` (declared, with what each does here, in
        ``nbmodal/_function_options.py``). Those that mean something on your own hosts:
        ``host`` names a configured SSH host (``nbmodal host add``); by default
        runs go to the local agent, or are placed among the configured hosts.
        ``gpu`` asks for whole GPUs: ``"H100"``, ``"A100-80GB:2"``, ``"any"``, or
        a list of fallbacks in order of preference. ``volumes`` mounts volumes:
        ``{"/ckpt": nbmodal.Volume.from_name("ckpt")}`` (or the volume's name).
        ``retries`` (an int or ``nbmodal.Retries``) retries failed inputs;
        ``max_containers`` caps how many containers a map uses at once;
        ``scaledown_window`` is how many seconds its idle containers stay warm;
        ``min_containers`` keeps that many up once it has run; ``buffer_containers``
        keeps that many idle ones ready while it is in use. ``cpu`` (cores) and
        ``memory`` (MiB) are reserved for each container: its cores are its own (it is
        pinned to them), and runs wait while the host has no room; ``(request, limit)``
        also caps it (``memory=(1024, 2048)``: a run above 2 GiB fails with
        ``MemoryLimitExceededError``). ``timeout`` defaults to Modal's 300 s. ``image`` (an
        ``nbmodal.Image``) is the environment it runs in, built on the host at first use.
        Cloud-only keywords (``region``, ``cloud``…) are accepted with one warning each.

        Example::

            @app.function(gpu="H100", timeout=600, region="us-east")   # region: warned, no effect
            def train(cfg): ...
        """
        from nbmodal._function_options import CONCURRENT_INPUTS, function_keywords

        keywords = self._with_app_defaults(function_keywords(options, where="App.function"))
        concurrent_inputs = keywords.pop(CONCURRENT_INPUTS, None)

        def wrap(fn: Callable[P, R]) -> Function[P, R]:
            function = Function(fn, self, **keywords)
            if concurrent_inputs:  # allow_concurrent_inputs=, Modal's old @concurrent
                function.max_inputs = concurrent_inputs
            self.registered_functions[function.name] = function
            return function

        return wrap(_warn_parentheses_missing) if _warn_parentheses_missing is not None else wrap

    def cls(self, _warn_parentheses_missing: type | None = None, **options: Any) -> Any:
        """Decorate a class whose instances live in warm containers (see ``nbmodal.cls``).

        Takes every keyword of Modal's ``App.cls`` (the same table as ``function``); they are checked
        here, at decoration.

        Example::

            @app.cls(gpu="any", scaledown_window=600)
            class Model: ...
        """
        from nbmodal._function_options import function_keywords
        from nbmodal.cls import Cls

        keywords = self._with_app_defaults(function_keywords(options, where="App.cls", on="cls"))

        def wrap(user_cls: type) -> Cls:
            cls = Cls(user_cls, keywords, app=self)
            self.registered_classes[user_cls.__name__] = cls
            return cls

        return wrap(_warn_parentheses_missing) if _warn_parentheses_missing is not None else wrap

    def _with_app_defaults(self, keywords: dict[str, Any]) -> dict[str, Any]:
        """A function's keywords with this App's ``image`` where it names none of its own, and the App's
        ``secrets`` and ``volumes`` added to its own (its own win on a clash)."""
        from nbmodal.secret import merged

        if self.image is not None and keywords.get("image") is None:
            keywords["image"] = self.image
        if self.secrets:
            keywords["secrets"] = merged(self.secrets, keywords.get("secrets"))
        if self.volumes:
            keywords["volumes"] = {**self.volumes, **(keywords.get("volumes") or {})}
        return keywords

    @property
    def is_interactive(self) -> bool:
        """Modal's interactive mode (``interact()``) is not available yet: always ``False``."""
        return False

    @property
    def app_id(self) -> str | None:
        """Nothing is deployed here, so an App has no id: ``None``, as Modal's for an App not running."""
        return None

    @property
    def description(self) -> str:
        """The App's name, or a fallback that says where it was made."""
        return self.name or "unnamed nbmodal app"

    def set_description(self, description: str) -> None:
        """Name the App in listings where it has no name."""
        if not self.name:
            self.name = description

    @staticmethod
    def lookup(name: str, *, client: Any = None, environment_name: str | None = None,
               create_if_missing: bool = False) -> App:
        """The App named ``name``: the one made in this process, else the one deployed on an agent (the local
        one or a configured host; its functions and classes called by name), else a new one with
        ``create_if_missing=True``; ``NotFoundError`` listing the deployed apps otherwise.

        Example::

            app = nbmodal.App.lookup("nightly")
            app.registered_functions["evaluate"].remote()
        """
        from nbmodal.exceptions import NotFoundError

        if name in _APPS_BY_NAME:
            return _APPS_BY_NAME[name]
        from nbmodal._runtime.deployed import deployed_app

        try:
            return deployed_app(name)
        except NotFoundError:
            if create_if_missing:
                return App(name)
            raise

    def deploy(self, *, name: str | None = None, environment_name: str | None = None, tag: str = "",
               client: Any = None, host: str | None = None) -> App:
        """Deploy the App's functions and classes on the hosts they target (their ``host=``, else ``host``,
        else placement), where the agent keeps them: they survive agent restarts and host reboots, their
        ``schedule=`` runs there with no notebook connected, ``min_containers`` are kept warm, and
        ``Function.from_name(name, fn)`` / ``Cls.from_name`` call them from any notebook or process.
        Deploying again replaces the previous version atomically (calls in flight finish on it).

        Example::

            app = nbmodal.App("nightly")

            @app.function(schedule=nbmodal.Cron("0 3 * * *"))
            def evaluate(): ...

            app.deploy()
        """
        from nbmodal._runtime.deployed import deploy_app, deployed_from, describe_deploy
        from nbmodal.output import default_sink

        deployed = deploy_app(self, name=name, host=host, deployed_from=deployed_from())
        default_sink().notice(describe_deploy(name or self.name or "", deployed))
        return self

    @property
    def registered_web_endpoints(self) -> list[str]:
        """Names of its functions (and class methods) marked ``@web_server``, ``@asgi_app``, ``@wsgi_app``
        or ``@fastapi_endpoint``."""
        from nbmodal._web_endpoints import short_name, web_functions

        return [short_name(function) for function in web_functions(self)]

    def include(self, other_app: App, /) -> App:
        """Add ``other_app``'s functions and classes to this App (for apps split over files)."""
        self.registered_functions.update(other_app.registered_functions)
        self.registered_classes.update(other_app.registered_classes)
        return self

    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *, name: str | None = None) -> Any:
        """Decorate the function ``nbmodal run file.py`` runs in this process, with its parameters as options.

        Example::

            @app.local_entrypoint()
            def main(n: int = 3):
                print(square.remote(n))

            # shell: nbmodal run file.py --n 5
        """

        def wrap(fn: Callable) -> LocalEntrypoint:
            entrypoint = LocalEntrypoint(fn, self, name or fn.__name__)
            self.registered_entrypoints[entrypoint.name] = entrypoint
            return entrypoint

        # Modal asks for parentheses; the bare decorator is accepted too, as it can't mean anything else.
        return wrap(_warn_parentheses_missing) if callable(_warn_parentheses_missing) else wrap

    @sync_and_async_context  # with app.run(): and async with app.run():
    def run(self, *, client: Any = None, detach: bool = False, interactive: bool = False,
            environment_name: str | None = None) -> Iterator[App]:
        """Modal's ephemeral app: functions need nothing started here, but the block decides what happens to
        the runs started in it. ``detach=True``: they are detached runs, going on after the block and the
        kernel (their results kept for ``FunctionCall.get()`` and ``nbmodal attach``); otherwise runs
        ``.spawn()``ed in the block that are still going when it ends are cancelled, as Modal stops an
        ephemeral app. ``interactive`` is not available yet.

        Example::

            with app.run(detach=True):
                call = train.spawn(cfg)      # keeps running after the block, and after the kernel exits
        """
        from nbmodal._web_endpoints import serve_endpoints

        block = _run_blocks.enter(detach)
        try:
            with serve_endpoints(self, keep=detach):  # its web endpoints, served while the block runs
                yield self
        finally:
            _run_blocks.leave(block)
            if not detach:  # its sandboxes end with it, as with Modal's ephemeral app (nbmodal/sandbox.py)
                from nbmodal.sandbox import end_app_sandboxes

                end_app_sandboxes(self)


# Apps by name, in this process: nothing is deployed, so an App is found where it was defined.
_APPS_BY_NAME: weakref.WeakValueDictionary[str, App] = weakref.WeakValueDictionary()


def named_app(name: str) -> App:
    """The App named ``name`` in this process; ``NotFoundError`` listing those there are."""
    from nbmodal.exceptions import NotFoundError

    app = _APPS_BY_NAME.get(name)
    if app is None:
        raise NotFoundError(f"no app {name!r} in this process (apps here: {', '.join(sorted(_APPS_BY_NAME)) or 'none'})"
                            f"; define or import it, or deploy it (app.deploy(), `nbmodal deploy`)")
    return app


def registered_in_app(app_name: str, name: str, kind: str) -> Any:
    """The function or class (``kind``: "functions", "classes") ``name`` of the App ``app_name`` defined
    in this process; ``NotFoundError`` listing what it has."""
    from nbmodal.exceptions import NotFoundError

    registry = getattr(named_app(app_name), f"registered_{kind}")
    found = registry.get(name)
    if found is None:
        singular = {"functions": "function", "classes": "class"}[kind]
        raise NotFoundError(f"app {app_name!r} has no {singular} {name!r} (its {kind}: "
                            f"{', '.join(sorted(registry)) or 'none'})")
    return found


def registered_or_deployed(app_name: str, name: str, kind: str) -> Any:
    """``registered_in_app`` where the App is defined in this process and has it; else the deployed one,
    from an agent (``NotFoundError`` listing what is deployed, or what the App here has)."""
    from nbmodal._runtime.deployed import deployed_class, deployed_function
    from nbmodal.exceptions import NotFoundError

    try:
        return registered_in_app(app_name, name, kind)
    except NotFoundError as here:
        try:
            return deployed_function(app_name, name) if kind == "functions" else deployed_class(app_name, name)
        except NotFoundError as there:
            if app_name in _APPS_BY_NAME:
                raise NotFoundError(f"{here}; nor is it deployed ({there})") from None
            raise NotFoundError(f"{there}; and no app {app_name!r} is defined in this process") from None


@dataclasses.dataclass(frozen=True)
class FunctionStats:
    """What ``Function.get_current_stats()`` returns, as in Modal."""

    backlog: int            # its runs waiting for a container
    num_total_runners: int  # its containers, busy or warm


class Function(Generic[P, R]):
    def __init__(self, fn: Callable[P, R], app: App | None = None, *, timeout: float | None = None,
                 name: str | None = None, host: str | None = None, gpu: str | list[str] | None = None,
                 volumes: dict[str, Any] | None = None, retries: int | Retries | None = None,
                 max_containers: int | None = None, scaledown_window: float | None = None,
                 min_containers: int = 0, buffer_containers: int = 0, cpu: CpuRequest = 0.0, memory: MemoryRequest = 0,
                 image: Any = None, secrets: Sequence[Any] = (), schedule: Any = None) -> None:
        from nbmodal.image import Image
        from nbmodal.schedule import checked_schedule
        from nbmodal.secret import merged, secret_sources

        # As given, for with_options (a copy with some of them changed).
        self._options: dict[str, Any] = dict(
            timeout=timeout, name=name, host=host, gpu=gpu, volumes=volumes, retries=retries,
            max_containers=max_containers, scaledown_window=scaledown_window, min_containers=min_containers,
            buffer_containers=buffer_containers, cpu=cpu, memory=memory, image=image, secrets=secrets,
            schedule=schedule)
        self._secret_sources = secret_sources(secrets, "App.function")
        self.secrets = merged(secrets)
        if image is not None and not isinstance(image, Image):
            raise TypeError(f"image= takes an nbmodal.Image, not a {type(image).__name__}")
        self.image = image
        self.raw_f = fn
        # Run by the host's agent once the app is deployed (nbmodal/schedule.py; remote_agent/schedules.py).
        self.schedule = checked_schedule(schedule, name or str(getattr(fn, "__qualname__", fn)))
        self.host = host
        self.retries = retries
        self.max_containers = max_containers
        self.max_inputs = getattr(fn, "_nbmodal_max_inputs", 1)  # @nbmodal.concurrent
        cluster: tuple[int, int] = getattr(fn, "_nbmodal_cluster", (0, 1))  # @nbmodal.clustered(size, procs)
        self.cluster_size, self.procs_per_node = cluster
        self.gpu = to_gpu_string(gpu)  # strings, nbmodal.gpu objects (deprecated) or a list of fallbacks
        try:
            parse_gpu_request(self.gpu)  # an unknown type is an error here, at decoration
        except GpuRequestError as exc:  # Modal's InvalidError (and the ValueError it always was)
            raise InvalidGpuError(str(exc)) from None
        mounts = {check_mount_path(getattr(v, "name", v), str(path)): getattr(v, "name", v)
                  for path, v in (volumes or {}).items()}
        self.spec = container_spec(self.gpu, mounts, cpu, memory)
        self.spec.scaledown_window_s = scaledown_window or 0.0
        self.spec.min_containers, self.spec.buffer_containers = min_containers or 0, buffer_containers or 0
        self.app = app
        # Modal's default for functions (a %%remote cell has none); timeout=0 runs without one.
        self.timeout = DEFAULT_FUNCTION_TIMEOUT_S if timeout is None else float(timeout)
        self.name: str = name or str(getattr(fn, "__qualname__", repr(fn)))
        functools.update_wrapper(self, fn)

    def run_options(self, detach: bool = False) -> RunOptions:
        """The options of each run of this function (a map's batches get them too)."""
        return RunOptions(timeout_s=self.timeout, detach=detach or _run_blocks.detached(),
                          app=self.app.name or "" if self.app else "",
                          secrets=getattr(self, "_secret_sources", ()))  # () in a Function pickled before secrets

    def with_options(self, **options: Any) -> Function[P, R]:
        """A copy of this function with other options (any keyword of ``@app.function``; those given replace
        its own, ``secrets`` included, as in Modal).

        Example::

            big = train.with_options(gpu="A100-80GB", timeout=3600, secrets=[nbmodal.Secret.from_name("wandb")])
            big.remote(cfg)
        """
        from nbmodal._function_options import CONCURRENT_INPUTS, function_keywords

        keywords = function_keywords(options, where="Function.with_options")
        concurrent_inputs = keywords.pop(CONCURRENT_INPUTS, None)
        copy: Function[P, R] = Function(self.raw_f, self.app, **{**self._options, **keywords})
        copy.max_inputs = concurrent_inputs or self.max_inputs
        copy.cluster_size, copy.procs_per_node = self.cluster_size, self.procs_per_node
        copy.max_containers = keywords.get("max_containers", self.max_containers)
        copy.spec.min_containers = keywords.get("min_containers", self.spec.min_containers)
        copy.spec.buffer_containers = keywords.get("buffer_containers", self.spec.buffer_containers)
        copy.spec.scaledown_window_s = keywords.get("scaledown_window", self.spec.scaledown_window_s)
        return copy

    def _refuse_for_gang(self, method: str) -> None:
        """A clustered function runs as one gang per ``.remote()`` call: other ways of calling it aren't built."""
        if self.cluster_size:
            from nbmodal.exceptions import not_available

            raise not_available(f"{self.name}.{method}() of a clustered function", "call it with .remote()")

    def _retries(self) -> Retries:
        return Retries.of(self.retries)

    def _remote_once(self, args: tuple, kwargs: dict) -> Any:
        """One attempt of ``.remote()``: a run of its own, or a place in a batch (``@batched``)."""
        if self.cluster_size:  # @nbmodal.clustered: a gang of containers, relaunched whole on a retry
            from nbmodal._runtime.gang_calls import call_gang

            return call_gang(self, args, kwargs)
        if batched_size(self.raw_f):
            return remote_batcher(self, self._send_batch).call(args, kwargs)
        sink = default_sink()  # the image build's log, then the run's output
        target = self.resolve(sink)
        request = call_request(target, self.name, (self.raw_f, args, kwargs), self.run_options())
        finished, transfer = follow(target, request, sink)
        raise_for_state(finished)
        return function_result(finished, transfer.fetch)

    def _send_batch(self, work: list[tuple[int, tuple, dict]]) -> list[tuple[int, bool, Any]]:
        """Concurrent ``.remote()`` calls of a ``@batched`` function as one batch run; failures rebuilt."""
        target = self.resolve()
        request = batch_request(target, self.name, self.raw_f, work, self.max_inputs, self.run_options())
        finished, transfer = follow(target, request, default_sink())
        raise_for_state(finished)
        return [(index, ok, value if ok else rebuild_error_record(value))
                for index, ok, value in function_result(finished, transfer.fetch)]

    def resolve(self, sink: OutputSink | None = None) -> RunTarget:
        """Where its next run goes, ready to run there (its image built there first, its log into ``sink``)."""
        return resolve_target(host=self.host, spec=self.spec, image=self.image, sink=sink)

    @_WithAio
    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function on the agent and return its result (its prints stream here).

        A failure is retried as ``retries=`` says (the user's error, a timeout, a container that died),
        with a map's backoff; inside a running function this is a nested call, to the same agent.
        """
        return call_with_retries(lambda: self._remote_once(args, kwargs), self._retries(), f"{self.name}()",
                                 lambda message: default_sink().notice(message))

    @_WithAio  # a generator function: .aio is an async iterator
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

    @_WithAio.iterating  # async for x in f.map.aio(xs)
    def map(self, *iterables: Any, kwargs: dict | None = None, order_outputs: bool = True,
            return_exceptions: bool = False, wrap_returned_exceptions: bool = True) -> MapRunner:
        """Call the function on each set of arguments, in parallel containers; iterate it for the results.

        ``kwargs`` go to every call. Inputs are read as containers free up, so a lazy or endless
        iterator works (stop consuming and the map stops). With ``return_exceptions=True`` a failed
        input yields ``UserCodeException`` (its error in ``.exc``; it is also an instance of the
        error's type) instead of raising; ``wrap_returned_exceptions=False`` yields the error itself.
        Each input's output is kept: ``run.logs(i)`` once the map has run input ``i``.

        Example::

            run = train.map([1e-3, 3e-4, 1e-4], kwargs={"epochs": 3})
            losses = list(run)
            print(run.logs(0))
        """
        self._refuse_for_gang("map")
        return MapRunner(self, map_inputs(iterables, kwargs), order_outputs, return_exceptions,
                         total=known_length(*iterables), wrap_returned_exceptions=wrap_returned_exceptions)

    @_WithAio.iterating
    def starmap(self, input_iterator: Any, *, kwargs: dict | None = None, order_outputs: bool = True,
                return_exceptions: bool = False, wrap_returned_exceptions: bool = True) -> MapRunner:
        """Like ``map``, with each item a tuple of arguments (read lazily, as ``map`` reads its inputs)."""
        self._refuse_for_gang("starmap")
        return MapRunner(self, starmap_inputs(input_iterator, kwargs), order_outputs, return_exceptions,
                         total=known_length(input_iterator), wrap_returned_exceptions=wrap_returned_exceptions)

    @_WithAio
    def spawn_map(self, *iterables: Any, kwargs: dict | None = None) -> None:
        """Start the function on each input and return at once; the runs belong to the agent (they go
        on if this kernel stops). Use it for effects (write to a Volume, a Dict, a Queue).

        ``retries=`` are applied in the containers, with a map's backoff (no one waits here to retry);
        a container that dies loses its unfinished inputs.
        """
        self._refuse_for_gang("spawn_map")
        inputs = [(index, args, kw) for index, (args, kw) in enumerate(map_inputs(iterables, kwargs))]
        if not inputs:
            return
        target = self.resolve()
        options = dataclasses.replace(self.run_options(detach=True), retry_delays=self._retries().delays())
        batches = min(len(inputs), self.max_containers or DEFAULT_MAX_CONTAINERS)  # that many containers at once
        for part in range(batches):
            _run_blocks.note_spawned(submit(target, batch_request(
                target, self.name, self.raw_f, inputs[part::batches], self.max_inputs, options)).run_id)

    @_WithAio
    def for_each(self, *iterables: Any, kwargs: dict | None = None, ignore_exceptions: bool = False) -> None:
        """Run the function on each input for its effects; waits for all of them."""
        for _ in self.map(*iterables, kwargs=kwargs, order_outputs=False, return_exceptions=ignore_exceptions):
            pass

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function here, in this process."""
        return self.raw_f(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.raw_f(*args, **kwargs)

    @_WithAio
    def spawn(self, *args: P.args, **kwargs: P.kwargs) -> FunctionCall[R]:
        """Start the function on the agent and return at once; ``.get()`` waits for the result.

        ``retries=`` are applied in the container (the caller may be gone), with a map's backoff; a call
        whose container died is started again by ``.get()`` while retries remain.
        """
        self._refuse_for_gang("spawn")
        call: tuple[Any, tuple, dict] = (self.raw_f, args, kwargs)
        if batched_size(self.raw_f):  # a @batched function's one input: a batch of one
            call = (call_as_batch_of_one, call, {})
        retries = self._retries()
        options = dataclasses.replace(self.run_options(detach=True), retry_delays=retries.delays())

        def start() -> str:
            target = self.resolve()
            run_id = submit(target, call_request(target, self.name, call, options)).run_id
            _run_blocks.note_spawned(run_id)
            return run_id

        return FunctionCall(start(), respawn=start, retries=retries)

    def get_raw_f(self) -> Callable[P, R]:
        """The Python function this Function wraps."""
        return self.raw_f

    @_WithAio
    def hydrate(self, client: Any = None) -> Function[P, R]:
        """Accepted for Modal code: a Function here needs no server-side identity."""
        return self

    @_WithAio
    def get_web_url(self) -> str | None:
        """Where the browser reaches this web endpoint (through the Jupyter proxy); ``None`` for a function
        that is not one.

        Example::

            with app.run():
                print(square.get_web_url())
        """
        from nbmodal._web_endpoints import web_url

        return web_url(self)

    @_WithAio
    def get_current_stats(self) -> FunctionStats:
        """Its queue and its containers now, on the host its next run would go to.

        ``backlog``: its runs waiting for a container; ``num_total_runners``: its containers, busy or warm.

        Example::

            stats = train.get_current_stats()
            print(stats.backlog, stats.num_total_runners)
        """
        target = self.resolve()
        labels = (f"{self.name}()", f"{self.name}() × ")
        runs = [run for run in target.client.list_runs() if run.label.startswith(labels)]
        backlog = sum(1 for run in runs if run.state == pb.PENDING)
        running = {run.run_id for run in runs if run.state == pb.RUNNING}
        containers = [c for c in target.client.list_containers()
                      if c.state != pb.CONTAINER_EXITED and (c.run_id in running or c.spec == target.spec)]
        return FunctionStats(backlog=backlog, num_total_runners=len(containers))

    @_WithAio
    def update_autoscaler(self, *, min_containers: int | None = None, max_containers: int | None = None,
                          buffer_containers: int | None = None, scaledown_window: int | None = None) -> None:
        """Change its autoscaler settings from its next call on; those not given keep their value.

        Example::

            train.update_autoscaler(min_containers=2, scaledown_window=600)
        """
        if min_containers is not None:
            self.spec.min_containers = min_containers
        if max_containers is not None:
            self.max_containers = max_containers
        if buffer_containers is not None:
            self.spec.buffer_containers = buffer_containers
        if scaledown_window is not None:
            self.spec.scaledown_window_s = scaledown_window

    @_WithAio
    def keep_warm(self, warm_pool_size: int) -> None:
        """Modal's deprecated spelling of ``update_autoscaler(min_containers=warm_pool_size)``."""
        from nbmodal.exceptions import DeprecationError

        warnings.warn("Function.keep_warm() is deprecated, as in Modal: use "
                      f"update_autoscaler(min_containers={warm_pool_size})", DeprecationError, stacklevel=2)
        self.update_autoscaler(min_containers=warm_pool_size)

    @classmethod
    def from_name(cls, app_name: str, name: str, *, namespace: Any = None,
                  environment_name: str | None = None) -> Function:
        """The function ``name`` of the App ``app_name``: defined in this process, else deployed on an agent
        (the local one or a configured host), whose calls then run the deployed code;
        ``NotFoundError`` listing the deployed apps or functions otherwise.

        Example::

            square = nbmodal.Function.from_name("demo", "square")
            square.remote(3)
        """
        return registered_or_deployed(app_name, name, "functions")

    def __repr__(self) -> str:
        return f"<nbmodal.Function {self.name}>"

    def __getstate__(self) -> dict[str, Any]:
        # A Function travels into the containers of functions that call it (nested calls).
        return picklable_state(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(restored_state(state))


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

    def __init__(self, object_id: str, *, respawn: Callable[[], str] | None = None,
                 retries: Retries | None = None) -> None:
        self.object_id = object_id
        self._seen_seq = 0
        self._finished: pb.RunFinished | None = None
        self._result: Any = None
        # Made by .spawn() in this process: a call whose container died is started again (a new run).
        self._respawn = respawn
        self._retries = retries or Retries()
        self._respawned = 0

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
            # Waiting for it without a timeout, this is its debugger: a breakpoint's prompt is answered here.
            follower = RunFollower(connection, default_sink(), DEFAULT_CANCEL_GRACE_S, cancel_on_interrupt=False,
                                   answer_input=StdinAnswers() if timeout is None else None)
            try:
                finished = follower.attach(self.object_id, self._seen_seq, timeout=timeout)
            except TimeoutError:
                raise TimeoutError(f"function call {self.object_id} has not finished after {timeout:g} s") from None
            except RunLostError as lost:  # its stream ended without a result
                if self._lost_and_retried(str(lost)):
                    return self.get(timeout)
                raise
            finally:
                self._seen_seq = follower.last_seq
            if finished is None:  # a followed attach ends with the run's end (or raises)
                raise RunLostError(f"function call {self.object_id} ended without a result; see `nbmodal runs`")
            if finished.state == pb.LOST and self._lost_and_retried(finished.error.message):
                return self.get(timeout)
            self._finished = finished
            raise_for_state(finished)
            # A spawned call's result is kept by the agent until fetched here.
            transfer = BlobTransfer.for_connection(connection, follower.client)
            self._result = function_result(finished, transfer.fetch)
        raise_for_state(finished)
        return self._result

    def _lost_and_retried(self, why: str) -> bool:
        """A run whose container died (preemption, out of memory), started again while retries remain."""
        if self._respawn is None or self._respawned >= self._retries.max_retries:
            return False
        self._respawned += 1
        delay = self._retries.delay(self._respawned)
        default_sink().notice(f"function call {self.object_id} lost its container ({why}); "
                              f"starting it again (retry {self._respawned} of {self._retries.max_retries})")
        time.sleep(delay)
        self.object_id, self._seen_seq = self._respawn(), 0
        return True

    @_WithAio
    def cancel(self, terminate_containers: bool = False) -> None:
        """Stop the run: KeyboardInterrupt inside it (or kill its container at once)."""
        locate_run(self.object_id).client().cancel(self.object_id, force=terminate_containers)

    @_WithAio.static
    def gather(*calls: FunctionCall) -> list[Any]:
        """Wait for several calls; results in the order given."""
        return [call.get() for call in calls]

    def __repr__(self) -> str:
        return f"<nbmodal.FunctionCall {self.object_id}>"

"""Every run this client starts is resolved and built here, once.

A run goes through two steps, whatever asked for it (a ``%%remote`` cell, a
sweep, ``.remote/.spawn/.map/.spawn_map/.remote_gen``, a class method):

1. ``resolve_target`` (or ``spread_targets`` for a map) decides where it runs:
   placement, the connection's client, the image built there, the Python
   check. The result is a ``RunTarget``.
2. ``cell_request``, ``call_request`` or ``batch_request`` builds the
   ``pb.RunRequest`` from the target and the run's ``RunOptions``; one
   builder fills every field, and every default lives in ``RunOptions``.

``follow`` and ``submit`` then send it. A new run option is a field of
``RunOptions`` and a line in ``_build``, plus the place the user spells it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nbmodal._runtime.call_pickle import pack_call
from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.connection import CONTAINER, Connection, HostConnection, place, run_hosts, spread
from nbmodal._runtime.debug_sources import debug_sources
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.images import spec_with_image
from nbmodal._runtime.resource_limits import CpuRequest, MemoryRequest, split_cpu, split_memory
from nbmodal._runtime.stdin_answers import StdinAnswers
from nbmodal._runtime.store_relay import ensure_routes
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal._runtime.web_access import web_access
from nbmodal.capture import pack_inputs
from nbmodal.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_MAX_RESULT_BYTES
from nbmodal.exceptions import VersionMismatchError
from nbmodal.hosts import LOCAL
from nbmodal.output import OutputSink, default_sink
from nbmodal_wire import pb
from nbmodal_wire.names import new_run_id
from remote_agent.worker.batch import run_batch
from remote_agent.worker.retrying import call_retrying

if TYPE_CHECKING:
    from nbmodal.image import Image


# Line 1 of a cell is ``%%remote``: its code starts on line 2.
CELL_FIRST_LINE = 2
MAX_LABEL = 120
# Modal's timeout of a function (or class) that names none; a %%remote cell has no default timeout.
DEFAULT_FUNCTION_TIMEOUT_S = 300.0
# Added to a batch's summed per-input timeouts: the container's own start and the batch's overhead.
BATCH_BACKSTOP_SLACK_S = 5.0


@dataclass(frozen=True)
class RunOptions:
    """How a run runs, as its caller asked; the defaults of every run are these."""

    timeout_s: float = 0.0  # 0: no timeout
    grace_s: float = DEFAULT_CANCEL_GRACE_S  # after an interrupt, how long before the container is killed
    session: str = ""
    detach: bool = False
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES  # a session's values above this stay remote
    app: str = ""  # the function's app: a nested call's container token reaches only its own app's runs
    # (app, name) of a deployed function called by name: the agent supplies its stored pickle (deployed.py)
    deployed: tuple[str, str] | None = None
    # Retried in the container, after these waits (spawn, spawn_map: their caller doesn't wait to retry).
    retry_delays: tuple[float, ...] = ()
    # Environment variables of its container (nbmodal/secret.py): named ones are read on the agent.
    secrets: tuple[pb.SecretSource, ...] = field(default=(), repr=False)  # values: never in a repr


@dataclass(frozen=True)
class RunTarget:
    """Where a run goes, resolved: the connection, its client, the spec (image built there), the transfer."""

    connection: Connection
    client: AgentClient
    spec: pb.ContainerSpec
    transfer: BlobTransfer

    @property
    def on_local_agent(self) -> bool:
        return self.connection.name == LOCAL

    def with_client(self, client: AgentClient) -> RunTarget:
        """The same target through ``client`` (after a reconnect the old client is closed)."""
        if client is self.client:
            return self
        return RunTarget(self.connection, client, self.spec, BlobTransfer.for_connection(self.connection, client))

    def current(self) -> RunTarget:
        """The same target through the connection's client of now."""
        return self.with_client(self.connection.client())


def container_spec(gpu: str, volumes: dict[str, str], cpu: CpuRequest = 0.0,
                   memory: MemoryRequest = 0) -> pb.ContainerSpec:
    """What the run's container must have: GPUs, cores, memory, and volumes mounted at their paths.

    ``cpu`` and ``memory`` are a request, or Modal's ``(request, limit)``: the request is reserved,
    the limit enforced (nbmodal/_runtime/resource_limits.py)."""
    cpu_request, cpu_limit = split_cpu(cpu)
    memory_request, memory_limit = split_memory(memory)
    return pb.ContainerSpec(gpu=gpu, cpu=cpu_request, memory_mib=memory_request, cpu_limit=cpu_limit,
                            memory_limit_mib=memory_limit,
                            volumes=[pb.VolumeMount(volume=name, path=path) for path, name in sorted(volumes.items())])


def check_python_versions(client: AgentClient, image: Image | None = None) -> None:
    """The default container's Python must be the notebook's (an image's Python is checked in its container)."""
    if image is None and client.hello.container_python != CLIENT_PYTHON:
        raise VersionMismatchError(
            f"this notebook runs Python {CLIENT_PYTHON} but the {client.label}'s containers run Python "
            f"{client.hello.container_python}; pickled code and data only move between equal minor versions. "
            f"Run the agent with Python {CLIENT_PYTHON}, or use this kernel's Python for the agent.")


def resolve_target(*, host: str | None, session: str = "", spec: pb.ContainerSpec, image: Image | None = None,
                   sink: OutputSink | None = None) -> RunTarget:
    """Where a run goes (``connection.place``), ready to run: its image built there (the build's log
    into ``sink``), and its Python checked against this kernel's. Placement is asked every time; without
    an image, what follows from its answer is kept (``reuse_target``)."""
    connection = place(host, session, spec)
    if image is None:
        return reuse_target(connection, spec, _target_without_image)
    return target_on(connection, spec=spec, image=image, sink=sink)


def _target_without_image(connection: Connection, spec: pb.ContainerSpec) -> RunTarget:
    return target_on(connection, spec=spec)


_targets: dict[tuple[Any, int], RunTarget] = {}
_targets_lock = threading.Lock()
MAX_KEPT_TARGETS = 64


def reuse_target(connection: Any, spec: pb.ContainerSpec,
                 resolve: Callable[[Any, pb.ContainerSpec], RunTarget]) -> RunTarget:
    """The ``RunTarget`` of a run on ``connection`` (chosen by placement just now) in ``spec`` (no image):
    the one resolved for the last such run while it went through the same live client, else
    ``resolve(connection, spec)``'s, kept for the next.

    A target depends on nothing else: its Python check and blob transfer follow from the client, and a
    spec without an image is used as it is (the target holds that very message, so a change to it shows).
    Routes between hosts are still made sure of every time.
    """
    client = connection.client()  # the live one: a restarted agent or a reconnect gives a new client
    key = (connection, id(spec))
    with _targets_lock:
        target = _targets.get(key)
    if target is not None and target.client is client and target.spec is spec:
        if type(connection) is HostConnection:  # only an SSH host's agent has routes to other hosts
            ensure_routes(connection)
        return target
    target = resolve(connection, spec)
    with _targets_lock:
        if len(_targets) >= MAX_KEPT_TARGETS:
            _targets.clear()
        _targets[key] = target
    return target


def forget_targets() -> None:
    """Drop every kept target: the next runs resolve theirs anew."""
    with _targets_lock:
        _targets.clear()


def spread_targets(*, host: str | None, spec: pb.ContainerSpec, image: Image | None = None,
                   sink: OutputSink | None = None) -> list[RunTarget]:
    """Every host a map may use (``connection.spread``), each resolved as ``resolve_target`` does;
    images are built on all of them before the first batch starts."""
    return [target_on(connection, spec=spec, image=image, sink=sink) for connection in spread(host, spec)]


def target_on(connection: Connection, *, spec: pb.ContainerSpec, image: Image | None = None,
              sink: OutputSink | None = None) -> RunTarget:
    """A run on ``connection``, resolved: its client, its image built there, its Python checked."""
    client = connection.client()
    ensure_routes(connection)  # its agent reaches the other hosts' Dicts, Queues and volumes (store_relay.py)
    check_python_versions(client, image)
    resolved = spec_with_image(spec, image, connection, sink if sink is not None else default_sink())
    return RunTarget(connection, client, resolved, BlobTransfer.for_connection(connection, client))


def cell_request(target: RunTarget, cell: str, filename: str, inputs: dict[str, Any], options: RunOptions,
                 label: str = "") -> pb.RunRequest:
    """A ``%%remote`` cell's run: its code and the notebook values it reads."""
    return _build(target, pb.CELL, label or cell_label(cell), pack_inputs(inputs, target.transfer.pack), options,
                  code=cell, filename=filename, first_line=CELL_FIRST_LINE)


def call_request(target: RunTarget, name: str, call: tuple[Any, tuple, dict], options: RunOptions,
                 generator: bool = False) -> pb.RunRequest:
    """A function's run: ``call`` is (function, args, kwargs); ``generator`` streams its items.
    With ``options.retry_delays`` the container retries the call itself (``worker/retrying.py``);
    the run's timeout then covers every attempt and wait."""
    called = call[0]
    if options.retry_delays and not generator:
        function, args, kwargs = call
        call = (call_retrying, (function, args, kwargs, options.retry_delays), {})
        options = replace(options, timeout_s=_with_retries(options.timeout_s, options.retry_delays))
    # A warm call of a notebook function reuses its pickle while nothing it captures changed (call_pickle.py).
    kept = pack_call(call) if options.deployed is None else None
    packed = (kept, "") if kept is not None else target.transfer.pack(call)
    request = _build(target, pb.FUNCTION, f"{name}()", packed, options, generator=generator)
    return _with_debug_sources(target, request, called)


def batch_request(target: RunTarget, name: str, function: Any, work: list[tuple[int, tuple, dict]],
                  max_inputs: int, options: RunOptions) -> pb.RunRequest:
    """One batch of a map: ``work`` is [(input index, args, kwargs)], run in one container by
    ``run_batch``. Each input has the options' timeout on its own; the run's timeout is the backstop."""
    retries = (options.retry_delays,) if options.retry_delays else ()
    payload = target.transfer.pack((run_batch, (function, work, max_inputs, options.timeout_s, *retries), {}))
    backstop = (_with_retries(options.timeout_s * len(work), options.retry_delays) + BATCH_BACKSTOP_SLACK_S
                if options.timeout_s else 0.0)
    request = _build(target, pb.FUNCTION, f"{name}() × {len(work)}", payload, replace(options, timeout_s=backstop))
    return _with_debug_sources(target, request, function)


def _with_debug_sources(target: RunTarget, request: pb.RunRequest, function: Any) -> pb.RunRequest:
    # On another machine, pdb shows the lines of code from the notebook or script by the text it carries.
    if not target.on_local_agent:
        request.debug_sources.update(debug_sources(function))
    return request


def _with_retries(timeout_s: float, retry_delays: tuple[float, ...]) -> float:
    """A run's timeout that covers each attempt and the waits between them (0 stays: no timeout)."""
    return timeout_s * (len(retry_delays) + 1) + sum(retry_delays) if timeout_s else 0.0


def cell_label(cell: str) -> str:
    """A cell's first line of code: how its run is named in lists."""
    for line in cell.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:MAX_LABEL]
    return "(empty cell)"


def _build(target: RunTarget, kind: pb.RunKind, label: str, packed: tuple[bytes, str], options: RunOptions, *,
           code: str = "", filename: str = "", first_line: int = 0, generator: bool = False) -> pb.RunRequest:
    """The one place a ``pb.RunRequest`` is made: every field, from the target and the options."""
    payload, payload_blob = packed
    return pb.RunRequest(
        kind=kind, label=label, payload=payload, payload_blob=payload_blob, code=code, filename=filename,
        first_line=first_line, spec=target.spec, session=options.session, timeout_s=options.timeout_s,
        cancel_grace_s=options.grace_s, detach=options.detach, client_python=CLIENT_PYTHON,
        max_result_bytes=options.max_result_bytes, cwd=_working_directory(target, kind),
        # Chosen here so that the run can be cancelled (and found again) before the agent answers.
        run_id=new_run_id(), generator=generator, app=options.app, web=_web_access(target),
        deployed=pb.DeployRef(app=options.deployed[0], function=options.deployed[1]) if options.deployed else None,
        secrets=options.secrets)


def _web_access(target: RunTarget) -> pb.WebAccess | None:
    # Where the user's browser reaches the run's ports (nbmodal.forward, web endpoints). A nested call,
    # made in a container, knows no browser: the agent takes its caller's.
    if target.connection.name == CONTAINER:
        return None
    return web_access(target.connection.name)


def _working_directory(target: RunTarget, kind: pb.RunKind) -> str:
    # A cell runs in the notebook's directory where that directory exists (the local agent's machine),
    # so its local modules and relative paths work as they do here. A function carries its code by value.
    return os.getcwd() if kind == pb.CELL and target.on_local_agent else ""


def follower(target: RunTarget, request: pb.RunRequest, sink: OutputSink) -> RunFollower:
    """What streams ``request``'s events into ``sink``; an interrupt waits the request's own grace (a detached
    run, one started in ``with app.run(detach=True)``, is only no longer watched: it goes on)."""
    return RunFollower(target.connection, sink, request.cancel_grace_s, answer_input=StdinAnswers(),
                       cancel_on_interrupt=not request.detach)


def follow(target: RunTarget, request: pb.RunRequest, sink: OutputSink) -> tuple[pb.RunFinished, BlobTransfer]:
    """Run ``request`` and follow it to the end; with the transfer that reads its results (through the
    follower's client, which may have reconnected on the way)."""
    run_follower = follower(target, request, sink)
    finished = run_follower.start(request)
    return finished, target.with_client(run_follower.client).transfer


def submit(target: RunTarget, request: pb.RunRequest) -> pb.RunInfo:
    """Start ``request`` and return at once (a detached run: the agent keeps its results)."""
    info = target.client.submit(request)
    run_hosts[info.run_id] = target.connection.name
    return info

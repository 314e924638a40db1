"""A ``%%remote`` cell, top to bottom: capture → wire → agent → stream back → results.

The magic (magics.py) parses its line into ``CellOptions`` and calls
``run_cell``; everything a cell does remotely happens here.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field, replace
from typing import Any

from nbmodal._runtime.connection import session_hosts
from nbmodal._runtime.invocation import (
    MAX_LABEL,
    RunOptions,
    RunTarget,
    cell_label,
    cell_request,
    container_spec,
    follow,
    resolve_target,
    submit,
)
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal.capture import select_inputs
from nbmodal.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_MAX_RESULT_BYTES
from nbmodal.output import DisplayedValue, OutputSink, default_sink
from nbmodal.results import cell_values, raise_for_state
from nbmodal.warm_cell import cell_spec, current_cell_number, prepare_cell
from nbmodal_wire import pb


@dataclass
class CellOptions:
    session: str = ""
    timeout: float = 0.0
    grace: float = DEFAULT_CANCEL_GRACE_S
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    detach: bool = False
    host: str = ""
    image: Any = None  # an nbmodal.Image (the magic resolves image=NAME)
    gpu: str = ""
    volumes: dict[str, str] = field(default_factory=dict)  # mount path -> volume name
    map: tuple[str, str] | None = None  # (name bound in the cell, notebook list it takes values from)
    cpu: float = 0.0
    memory: int = 0  # MiB
    secrets: tuple[pb.SecretSource, ...] = ()  # secrets=hf,wandb: named secrets, read on the host
    nodes: int = 1           # nodes=N: a gang of N containers (nbmodal/_runtime/gang.py)
    procs_per_node: int = 1  # procs_per_node=K: torchrun runs the cell K times in each


# Names each session created remotely: never overwritten by notebook copies.
_session_names: dict[str, set[str]] = {}


def run_cell(shell: Any, cell: str, options: CellOptions) -> Any:
    """Run ``cell`` remotely as if it ran here; returns the last expression's display."""
    filename = f"<remote cell In[{current_cell_number(shell)}]>"
    # Its label, and !cmd, x = !cmd and %%bash lines as calls the container runs: once per source (warm_cell.py).
    prepared = prepare_cell(cell)
    prepared.check_syntax(filename)  # a SyntaxError shows now
    label, cell = prepared.label, prepared.code
    inputs = select_inputs(cell, shell.user_ns, skip=_session_names.get(options.session, ()))
    if options.map:
        return run_cell_sweep(shell, cell, filename, inputs, options, label)
    if options.nodes > 1 or options.procs_per_node > 1:
        return run_cell_gang(shell, cell, filename, inputs, options, label)

    sink = default_sink(shell)
    target = _resolve(options, options.session, sink)
    request = cell_request(target, cell, filename, inputs, run_options(options), label=label)
    if options.session:
        session_hosts[options.session] = target.connection.name

    if options.detach:
        from nbmodal.widgets import DetachedRun

        return DetachedRun(target.client, submit(target, request))

    finished, transfer = follow(target, request, sink)
    return apply_cell_result(shell, transfer, finished, options.session, sink.execute_result)


def run_options(options: CellOptions) -> RunOptions:
    """The run options a cell's line asked for (frozen: one serves every cell with that line)."""
    fields = (options.timeout, options.grace, options.session, options.detach, options.max_result_bytes)
    if options.secrets:  # protobuf messages, which can't be a cache key: made anew
        return _run_options_of(*fields, secrets=options.secrets)
    return _kept_run_options(*fields)


def _run_options_of(timeout: float, grace: float, session: str, detach: bool, max_result_bytes: int,
                    secrets: tuple[pb.SecretSource, ...] = ()) -> RunOptions:
    return RunOptions(timeout_s=timeout, grace_s=grace, session=session, detach=detach,
                      max_result_bytes=max_result_bytes, secrets=secrets)


_kept_run_options = functools.lru_cache(maxsize=64)(_run_options_of)


def run_cell_sweep(shell: Any, cell: str, filename: str, inputs: dict[str, Any], options: CellOptions,
                   label: str = "") -> None:
    """``map=lr:lrs``: the cell once per value of ``lrs`` bound to ``lr``, in parallel containers;
    each name it assigns comes back as a list in input order."""
    from concurrent.futures import ThreadPoolExecutor

    from nbmodal._runtime.fanout import DEFAULT_MAX_CONTAINERS, TailSink

    if options.map is None:
        raise ValueError("a sweep needs map=NAME:LIST (the name the cell uses, the notebook list of its values)")
    name, source = options.map
    values = list(shell.user_ns[source])
    target = _resolve(options, "", default_sink())  # a sweep's runs are not in a session
    sweep_options = sweep_run_options(options)

    def run_one(value: Any) -> tuple[pb.RunFinished, list[str]]:
        run_label = f"{label or cell_label(cell)} [{name}={value!r}]"[:MAX_LABEL]
        request = cell_request(target, cell, filename, {**inputs, name: value}, sweep_options, label=run_label)
        tail: collections.deque[str] = collections.deque(maxlen=5)
        finished, _ = follow(target, request, TailSink(tail))
        return finished, list(tail)

    with ThreadPoolExecutor(min(DEFAULT_MAX_CONTAINERS, max(1, len(values)))) as pool:
        outcomes = list(pool.map(run_one, values))
    collected: dict[str, list[Any]] = {}
    for position, (finished, tail) in enumerate(outcomes):
        print(f"── {name}={values[position]!r}: {pb.RunState.Name(finished.state).lower()}")
        print("".join(tail), end="")
        assigned = cell_values(finished, "", target.client.label, target.transfer.fetch)
        for key, value in assigned.items():
            collected.setdefault(key, [None] * len(values))[position] = value
    shell.user_ns.update(collected)
    for finished, _ in outcomes:  # as a local loop would: the first failure is raised
        raise_for_state(finished, cell=True)
    return None


def run_cell_gang(shell: Any, cell: str, filename: str, inputs: dict[str, Any], options: CellOptions,
                  label: str) -> Any:
    """``nodes=N``: the cell on N containers started together (a gang); rank 0's output and names come
    back, the others' output is kept per rank (``nbmodal.last_cluster_run().logs(rank)``)."""
    from nbmodal._runtime.gang_calls import cell_gang

    if options.session or options.detach:
        raise ValueError("%%remote nodes=N runs a gang of fresh containers: it takes neither session= nor "
                         "--detach")
    sink = default_sink()
    spec = container_spec(options.gpu, options.volumes, options.cpu, options.memory)
    return cell_gang(cell, filename, inputs, run_options(options), label, host=options.host or None,
                     nodes=options.nodes, procs_per_node=options.procs_per_node, spec=spec, image=options.image,
                     sink=sink, apply=lambda transfer, finished: apply_cell_result(
                         shell, transfer, finished, "", sink.execute_result))


def sweep_run_options(options: CellOptions) -> RunOptions:
    """A sweep's runs: the cell's options, each in its own container (no session, never detached)."""
    return replace(run_options(options), session="", detach=False)


def _resolve(options: CellOptions, session: str, sink: OutputSink) -> RunTarget:
    # Placement every time (the hosts file, a session's host); without an image, what follows from its answer once.
    spec = cell_spec(options.gpu, options.volumes, options.cpu, options.memory)
    return resolve_target(host=options.host, session=session, spec=spec, image=options.image, sink=sink)


def apply_cell_result(shell: Any, transfer: BlobTransfer, finished: pb.RunFinished, session: str,
                      execute_result: dict | None, keep_blobs: bool = False) -> Any:
    """Set what the cell assigned, then raise what it raised (as a local cell would)."""
    if session:
        _session_names[session] = set(finished.session_names)
    fetch = lambda blob_id: transfer.fetch(blob_id, delete=not keep_blobs)  # noqa: E731
    values = cell_values(finished, session, transfer.client.label, fetch)
    if values:
        shell.user_ns.update(values)
    raise_for_state(finished, cell=True)
    return DisplayedValue(execute_result) if execute_result else None


def forget_session(name: str) -> None:
    _session_names.pop(name, None)
    session_hosts.pop(name, None)

"""A ``%%remote`` cell, top to bottom: capture → wire → agent → stream back → results.

The magic (magics.py) parses its line into ``CellOptions`` and calls
``run_cell``; everything a cell does remotely happens here.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from typing import Any

from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.connection import place, run_hosts, session_hosts
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.images import spec_with_image
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal.capture import pack_inputs, select_inputs
from nbmodal.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_MAX_RESULT_BYTES
from nbmodal.exceptions import VersionMismatchError
from nbmodal.hosts import LOCAL
from nbmodal.output import DisplayedValue, default_sink
from nbmodal.results import cell_values, raise_for_state
from nbmodal_wire.cellcode import parse_cell
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


# Names each session created remotely: never overwritten by notebook copies.
_session_names: dict[str, set[str]] = {}


def run_cell(shell: Any, cell: str, options: CellOptions) -> Any:
    """Run ``cell`` remotely as if it ran here; returns the last expression's display."""
    filename = f"<remote cell In[{current_cell_number(shell)}]>"
    parse_cell(cell, filename, first_line=2)  # a SyntaxError shows now; line 1 of the cell is %%remote
    inputs = select_inputs(cell, shell.user_ns, skip=_session_names.get(options.session, ()))
    if options.map:
        return run_cell_sweep(shell, cell, filename, inputs, options)

    spec = container_spec(options.gpu, options.volumes, options.cpu, options.memory)
    connection = place(options.host, options.session, spec)
    client = connection.client()
    sink = default_sink()
    spec = spec_with_image(spec, options.image, connection, sink)
    check_python_versions(client, options.image)
    payload, payload_blob = pack_inputs(inputs, BlobTransfer.for_connection(connection, client).pack)
    request = pb.RunRequest(
        kind=pb.CELL, label=_label(cell), payload=payload, payload_blob=payload_blob, code=cell,
        filename=filename, first_line=2, spec=spec, session=options.session, timeout_s=options.timeout,
        cancel_grace_s=options.grace, detach=options.detach, client_python=CLIENT_PYTHON,
        max_result_bytes=options.max_result_bytes, cwd=os.getcwd() if connection.name == LOCAL else "")
    if options.session:
        session_hosts[options.session] = connection.name

    if options.detach:
        from nbmodal.widgets import DetachedRun

        info = client.submit(request)
        run_hosts[info.run_id] = connection.name
        return DetachedRun(client, info)

    follower = RunFollower(connection, sink, options.grace)
    finished = follower.start(request)
    return apply_cell_result(shell, BlobTransfer.for_connection(connection, follower.client), finished,
                             options.session, sink.execute_result)


def run_cell_sweep(shell: Any, cell: str, filename: str, inputs: dict[str, Any], options: CellOptions) -> None:
    """``map=lr:lrs``: the cell once per value of ``lrs`` bound to ``lr``, in parallel containers;
    each name it assigns comes back as a list in input order."""
    from concurrent.futures import ThreadPoolExecutor

    from nbmodal._runtime.fanout import DEFAULT_MAX_CONTAINERS, TailSink

    name, source = options.map
    values = list(shell.user_ns[source])
    spec = container_spec(options.gpu, options.volumes, options.cpu, options.memory)
    connection = place(options.host, "", spec)
    client = connection.client()
    spec = spec_with_image(spec, options.image, connection, default_sink())
    check_python_versions(client, options.image)
    transfer = BlobTransfer.for_connection(connection, client)

    def run_one(value: Any) -> tuple[pb.RunFinished, list[str]]:
        payload, payload_blob = pack_inputs({**inputs, name: value}, transfer.pack)
        request = pb.RunRequest(
            kind=pb.CELL, label=f"{_label(cell)} [{name}={value!r}]"[:120], payload=payload,
            payload_blob=payload_blob, code=cell, filename=filename, first_line=2, spec=spec,
            timeout_s=options.timeout, cancel_grace_s=options.grace, client_python=CLIENT_PYTHON,
            cwd=os.getcwd() if connection.name == LOCAL else "")
        tail = collections.deque(maxlen=5)
        return RunFollower(connection, TailSink(tail), options.grace).start(request), list(tail)

    with ThreadPoolExecutor(min(DEFAULT_MAX_CONTAINERS, max(1, len(values)))) as pool:
        outcomes = list(pool.map(run_one, values))
    collected: dict[str, list[Any]] = {}
    for position, (finished, tail) in enumerate(outcomes):
        print(f"── {name}={values[position]!r}: {pb.RunState.Name(finished.state).lower()}")
        print("".join(tail), end="")
        assigned = cell_values(finished, "", client.label, transfer.fetch)
        for key, value in assigned.items():
            collected.setdefault(key, [None] * len(values))[position] = value
    shell.user_ns.update(collected)
    for finished, _ in outcomes:  # as a local loop would: the first failure is raised
        raise_for_state(finished)
    return None


def apply_cell_result(shell: Any, transfer: BlobTransfer, finished: pb.RunFinished, session: str,
                      execute_result: dict | None, keep_blobs: bool = False) -> Any:
    """Set what the cell assigned, then raise what it raised (as a local cell would)."""
    if session:
        _session_names[session] = set(finished.session_names)
    fetch = lambda blob_id: transfer.fetch(blob_id, delete=not keep_blobs)  # noqa: E731
    shell.user_ns.update(cell_values(finished, session, transfer.client.label, fetch))
    raise_for_state(finished)
    return DisplayedValue(execute_result) if execute_result else None


def container_spec(gpu: str, volumes: dict[str, str], cpu: float = 0.0, memory: int = 0) -> pb.ContainerSpec:
    """What the run's container must have: GPUs, cores, memory, and volumes mounted at their paths."""
    if cpu < 0 or memory < 0:
        raise ValueError("cpu= and memory= must not be negative")
    return pb.ContainerSpec(gpu=gpu, cpu=cpu, memory_mib=memory,
                            volumes=[pb.VolumeMount(volume=name, path=path) for path, name in sorted(volumes.items())])


def current_cell_number(shell: Any) -> int:
    """The In[n] of the running cell (IPython versions differ on when they count)."""
    numbers = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if numbers:
        return max(numbers.values())
    return shell.execution_count


def forget_session(name: str) -> None:
    _session_names.pop(name, None)
    session_hosts.pop(name, None)


def check_python_versions(client: AgentClient, image: Any = None) -> None:
    """The default container's Python must be the notebook's (an image's Python is checked in its container)."""
    if image is None and client.hello.container_python != CLIENT_PYTHON:
        raise VersionMismatchError(
            f"this notebook runs Python {CLIENT_PYTHON} but the {client.label}'s containers run Python "
            f"{client.hello.container_python}; pickled code and data only move between equal minor versions. "
            f"Run the agent with Python {CLIENT_PYTHON}, or use this kernel's Python for the agent.")


def _label(cell: str) -> str:
    for line in cell.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:120]
    return "(empty cell)"

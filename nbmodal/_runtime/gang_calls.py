"""A clustered function's call and a ``%%remote nodes=N`` cell: one request per rank, run as a gang.

Placement and following are nbmodal/_runtime/gang.py's; this module builds
each rank's request with the ordinary builders (nbmodal/_runtime/invocation.py)
and turns the gang's outcome into the call's result or the cell's names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbmodal._runtime.gang import GangOutcome, gang_connections, new_cluster_id, set_members, start_gang
from nbmodal._runtime.invocation import RunOptions, RunTarget, call_request, cell_request, target_on
from nbmodal.output import OutputSink, default_sink
from nbmodal.results import function_result, raise_for_state
from nbmodal_wire import pb
from remote_agent.worker.torchrun import run_cell_under_torchrun, run_under_torchrun

if TYPE_CHECKING:
    from nbmodal.app import Function
    from nbmodal.image import Image


def gang_targets(host: str | None, size: int, spec: pb.ContainerSpec, image: Image | None,
                 sink: OutputSink) -> list[RunTarget]:
    """Each rank's target, in rank order; the image is built once on each host."""
    targets: dict[int, RunTarget] = {}
    return [targets.setdefault(id(conn), target_on(conn, spec=spec, image=image, sink=sink))
            for conn in gang_connections(host, size, spec)]


def call_gang(function: Function, args: tuple, kwargs: dict) -> Any:
    """One call of a clustered function: every rank runs it; rank 0's result is returned."""
    sink = default_sink()
    size, procs = function.cluster_size, function.procs_per_node
    targets = gang_targets(function.host, size, function.spec, function.image, sink)
    call: tuple[Any, tuple, dict] = (function.raw_f, args, kwargs)
    if procs > 1:
        call = (run_under_torchrun, call, {})
    cluster_id = new_cluster_id()
    requests = []
    for target in targets:
        requests.append(call_request(target, function.name, call, function.run_options()))
    set_members(requests, targets, cluster_id)
    outcome = start_gang(cluster_id, targets, requests, sink, procs)
    _raise(outcome, lambda: raise_for_state(outcome.finished))
    return function_result(outcome.finished, outcome.transfer.fetch)


def cell_gang(cell: str, filename: str, inputs: dict[str, Any], options: RunOptions, label: str, *,
              host: str | None, nodes: int, procs_per_node: int, spec: pb.ContainerSpec, image: Image | None,
              sink: OutputSink, apply: Any) -> Any:
    """A ``%%remote nodes=N`` cell: every rank runs it; rank 0's assigned names come back (``apply`` sets
    them and raises what it raised). With ``procs_per_node`` K, torchrun runs the cell K times per node
    and no names come back."""
    targets = gang_targets(host, nodes, spec, image, sink)
    cluster_id = new_cluster_id()
    requests = []
    for target in targets:
        if procs_per_node > 1:
            request = call_request(target, label, (run_cell_under_torchrun, (cell, filename, inputs), {}), options)
        else:
            request = cell_request(target, cell, filename, inputs, options, label=label)
        requests.append(request)
    set_members(requests, targets, cluster_id)
    outcome = start_gang(cluster_id, targets, requests, sink, procs_per_node)
    if procs_per_node > 1:
        _raise(outcome, lambda: raise_for_state(outcome.finished, cell=True))
        return None
    return _raise(outcome, lambda: apply(outcome.transfer, outcome.finished))


def _raise(outcome: GangOutcome, check: Any) -> Any:
    """Run ``check`` (which raises what the reported rank raised), saying which rank it was."""
    try:
        return check()
    except BaseException as exc:
        if outcome.failed and not isinstance(exc, KeyboardInterrupt):
            outcome.annotate(exc)
        raise

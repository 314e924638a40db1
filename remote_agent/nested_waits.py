"""A nested call that could never start while its callers wait for it is refused, not left to hang.

A function that calls ``.remote()`` or ``.map()`` from its container waits for
the nested run while keeping its own GPUs, cores and memory. If the nested run
asks for what this host has only while those callers hold it (a recursive
``gpu="H100"`` function on a one-card host), it would wait in the admission
queue forever. The agent refuses such a ``Run`` at once, naming what is held
and by whom. A ``Submit`` (``.spawn``) is let through: its caller need not
wait for it, and it starts once the caller's container frees what it holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from nbmodal_wire import pb
from nbmodal_wire.gpu_request import describe, gpu_matches
from remote_agent.allocator import Allocator, Request


def never_starts_while_callers_wait(spec: pb.ContainerSpec, allocator: Allocator,
                                    callers: Iterable[str]) -> str | None:
    """Why a run of ``spec`` can't start while the containers ``callers`` keep what they hold (None if it can)."""
    if not (spec.gpu or spec.cpu or spec.memory_mib):
        return None
    holders = set(callers)
    if not holders:
        return None
    request = Request.of(spec)
    free_of_callers = [gpu for gpu in allocator.gpus if allocator.holders.get(gpu.index) not in holders]
    if request.options and not any(sum(gpu_matches(option, gpu) for gpu in free_of_callers) >= option.count
                                   for option in request.options):
        held = [gpu for gpu in allocator.gpus if allocator.holders.get(gpu.index) in holders]
        return (f"{request.text} needs cards its callers hold ({describe(held)}, by container(s) "
                f"{', '.join(sorted(holders))}) while they wait for it; this host has {describe(allocator.gpus)}")
    cores_left = sum(1 for core in allocator.cores if allocator.core_holders.get(core) not in holders)
    if request.cores > cores_left:
        return (f"{request.text} needs {request.cores} cores but only {cores_left} of this host's "
                f"{len(allocator.cores)} are not held by its callers while they wait for it")
    memory_left = allocator.memory_mib - sum(allocator.memory_held.get(holder, 0) for holder in holders)
    if request.memory_mib > memory_left:
        return (f"{request.text} needs {request.memory_mib} MiB but only {memory_left} MiB of this host's "
                f"{allocator.memory_mib} are not held by its callers while they wait for it")
    return None

"""Multi-node functions: ``@nbmodal.clustered(size=N)`` and ``get_cluster_info()``, as in Modal.

A clustered function runs as a gang of ``size`` containers at once, one per
node (nbmodal/_runtime/gang.py places and starts them together;
remote_agent/gangs.py holds each until all are ready). Each container gets
the environment ``torch.distributed`` and ``torchrun`` expect (``MASTER_ADDR``,
``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``NODE_RANK``,
``LOCAL_WORLD_SIZE``), and ``get_cluster_info()`` says which rank it is and
where the others are. ``.remote()`` returns rank 0's result.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nbmodal._runtime.gang import ClusterRun, last_cluster_run
from nbmodal.exceptions import InvalidError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["ClusterInfo", "ClusterRun", "clustered", "get_cluster_info", "last_cluster_run"]


@dataclass
class ClusterInfo:
    """Where this container stands in its gang (Modal's ``modal.experimental.ClusterInfo``).

    ``rank`` is this container's (its node's) rank; ``container_ips`` the address of every rank's
    container, in rank order, as the others reach it (IPv4 here, so ``container_ipv4_ips`` is the same).
    """

    rank: int
    container_ips: list[str] = field(default_factory=list)
    container_ipv4_ips: list[str] = field(default_factory=list)
    cluster_id: str = ""


def clustered(size: int, broadcast: bool = True, rdma: bool = False, *, procs_per_node: int = 1) -> Callable[[F], F]:
    """Run the function on ``size`` containers at once, one per node, started together (a gang).

    Put it under ``@app.function`` (which says what each container gets: ``gpu="H100:8"``…).
    ``broadcast`` (Modal: each call's input reaches every container) is what happens here always;
    ``rdma`` changes nothing (the hosts' own network is used). ``procs_per_node`` (nbmodal's own) runs
    the function under ``torchrun --nnodes SIZE --nproc-per-node K`` in each container instead of once.

    Example::

        @app.function(gpu="H100:8")
        @nbmodal.clustered(size=2)
        def train():
            import torch.distributed as dist
            dist.init_process_group("nccl")         # MASTER_ADDR, RANK… are set
            info = nbmodal.get_cluster_info()
            print(info.rank, info.container_ips)
    """
    if not isinstance(size, int) or size < 1:
        raise InvalidError(f"clustered(size={size!r}): size is the number of containers, a whole number ≥ 1")
    if not isinstance(procs_per_node, int) or procs_per_node < 1:
        raise InvalidError(f"clustered(procs_per_node={procs_per_node!r}): a whole number ≥ 1")

    def mark(fn: F) -> F:
        from nbmodal.app import Function

        if isinstance(fn, Function):  # written above @app.function: the Function itself
            fn.cluster_size, fn.procs_per_node = size, procs_per_node
        else:
            fn._nbmodal_cluster = (size, procs_per_node)  # type: ignore[attr-defined]  # read by App.function
        return fn

    return mark


def get_cluster_info() -> ClusterInfo:
    """This container's rank and every rank's address, in a clustered function or a ``nodes=`` cell.

    Example::

        info = nbmodal.get_cluster_info()
        if info.rank == 0:
            print("leader at", info.container_ips[0])
    """
    rank = os.environ.get("NBMODAL_CLUSTER_RANK")
    if rank is None:
        raise InvalidError("get_cluster_info() answers in the containers of a gang: a function under "
                           "@nbmodal.clustered(size=N), or a `%%remote nodes=N` cell")
    ips = [ip for ip in os.environ.get("NBMODAL_CLUSTER_IPS", "").split(",") if ip]
    return ClusterInfo(rank=int(rank), container_ips=ips, container_ipv4_ips=list(ips),
                       cluster_id=os.environ.get("NBMODAL_CLUSTER_ID", ""))

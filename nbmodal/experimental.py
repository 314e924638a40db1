"""``nbmodal.experimental``: the experimental Modal names the seed shows.

``clustered``, ``get_cluster_info`` and ``ClusterInfo`` are multi-node gangs
(nbmodal/cluster.py). ``stop_fetching_inputs()`` (a container leaves after its
current input) exists so that Modal code naming it imports; calling it raises
``NotAvailableError`` until nbmodal builds it.
"""

from __future__ import annotations

from typing import Any, NoReturn

from nbmodal.cluster import ClusterInfo, clustered, get_cluster_info
from nbmodal.exceptions import not_available

__all__ = ["ClusterInfo", "clustered", "get_cluster_info", "stop_fetching_inputs"]


def stop_fetching_inputs() -> NoReturn:
    """Modal: the container exits after its current input. Not available on nbmodal yet."""
    raise not_available("experimental.stop_fetching_inputs()",
                        "a container here serves inputs until it is idle for its scale-down window")


def __getattr__(name: str) -> Any:
    raise AttributeError(f"nbmodal.experimental has no {name!r}: of Modal's experimental API it has "
                         f"clustered, get_cluster_info, ClusterInfo and stop_fetching_inputs (not available yet)")

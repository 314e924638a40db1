"""``nbmodal.experimental``: the experimental Modal names the seed shows.

``stop_fetching_inputs()`` (a container leaves after its current input) and
``clustered`` (multi-node gangs) exist so that Modal code naming them imports;
calling them raises ``NotAvailableError`` until nbmodal builds them.
"""

from __future__ import annotations

from typing import Any, NoReturn

from nbmodal.exceptions import not_available


def stop_fetching_inputs() -> NoReturn:
    """Modal: the container exits after its current input. Not available on nbmodal yet."""
    raise not_available("experimental.stop_fetching_inputs()",
                        "a container here serves inputs until it is idle for its scale-down window")


def clustered(size: int, broadcast: bool = True, rdma: bool = False) -> NoReturn:
    """Modal: a function that runs on ``size`` containers at once (multi-node). Not available on nbmodal yet."""
    raise not_available("@experimental.clustered (multi-node gangs of containers)")


def __getattr__(name: str) -> Any:
    raise AttributeError(f"nbmodal.experimental has no {name!r}: of Modal's experimental API it has "
                         f"stop_fetching_inputs and clustered (both not available yet)")

"""The payload of a deployed web endpoint's serving run, made by the agent without importing nbmodal.

The run calls ``nbmodal._web_serving.serve_endpoint`` on the deployed function (a ``DeployedRef`` the
container resolves to the stored function, ``deployed.py``). The agent never imports nbmodal (nor user
code): ``_ServeEndpoint`` pickles as a call that imports ``serve_endpoint`` in the container.

Example (what the agent builds)::

    payload = serving_payload("shop", "predict", "shop-predict")
"""

from __future__ import annotations

import pickle
from typing import Any

from nbmodal_wire.deployed import DeployedRef


def load_serve_endpoint() -> Any:
    """In the container: the function that serves a web endpoint."""
    from nbmodal._web_serving import serve_endpoint

    return serve_endpoint


class _ServeEndpoint:
    """Unpickles as ``serve_endpoint`` itself."""

    def __reduce__(self) -> tuple[Any, tuple]:
        return load_serve_endpoint, ()


def serving_payload(app: str, function: str, endpoint: str) -> bytes:
    """``(serve_endpoint, (the deployed function, its endpoint name, its name), {})``, pickled."""
    return pickle.dumps((_ServeEndpoint(), (DeployedRef(app, function), endpoint, function), {}), protocol=5)

"""A call of a deployed function: the caller names it, the agent supplies its stored pickle.

The client sends a run whose function is a ``DeployedRef`` (app and name, no code): it pickles by
reference to ``resolve_deployed``. The agent wraps that payload in ``call_deployed`` with the pickle
stored at deploy (plain ``pickle`` of bytes: the agent never unpickles user code). In the container,
``call_deployed`` loads the stored function first, so that unpickling the caller's payload resolves the
reference to it, then calls it as any function run is called (retries, batches and generators wrap it
as usual).

Example (what the agent builds)::

    payload = wrap_call("ml", "train", stored_pickle, caller_payload, caller_blob)
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Any

_loaded: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


class DeployedRef:
    """Stands for the deployed function (or class) ``name`` of ``app`` in a caller's payload."""

    __slots__ = ("app", "name")  # no __dict__: a Function wrapping it copies none of these onto itself

    def __init__(self, app: str, name: str) -> None:
        self.app = app
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return resolve_deployed, (self.app, self.name)

    def __repr__(self) -> str:
        return f"<deployed {self.app}.{self.name}>"


def resolve_deployed(app: str, name: str) -> Any:
    """In a container: the deployed function ``app.name`` that ``call_deployed`` loaded for this run."""
    with _lock:
        found = _loaded.get((app, name))
    if found is None:
        raise LookupError(f"the deployed function {app}.{name} was not supplied by the agent for this run")
    return found


def call_deployed(app: str, name: str, stored: bytes, payload: bytes, payload_blob: str) -> Any:
    """Load the stored function, then the caller's ``(function, args, kwargs)`` (inline, or a blob in the
    container's blob dir), and make the call."""
    import cloudpickle

    from nbmodal_wire import blobs

    function = cloudpickle.loads(stored)
    with _lock:
        _loaded[(app, name)] = function
    if payload_blob:
        call = blobs.read_blob(Path(os.environ["NBMODAL_BLOB_DIR"]) / payload_blob, delete=True)
    else:
        call = cloudpickle.loads(payload)
    target, args, kwargs = call
    return target(*args, **kwargs)


def wrap_call(app: str, name: str, stored: bytes, payload: bytes, payload_blob: str = "") -> bytes:
    """The payload of a run of a deployed function: ``call_deployed`` with the stored pickle and the
    caller's payload, pickled without unpickling either (by the agent)."""
    return pickle.dumps((call_deployed, (app, name, stored, payload, payload_blob), {}), protocol=5)


def scheduled_payload(app: str, name: str) -> bytes:
    """The caller's payload of a scheduled run: the deployed function, called with no arguments."""
    return pickle.dumps((DeployedRef(app, name), (), {}), protocol=5)

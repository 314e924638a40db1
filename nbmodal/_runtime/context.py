"""Where the calling code runs, as Modal's ``is_local()``, ``current_function_call_id()`` and
``current_input_id()`` tell it.

In a container the worker records the run and input being processed
(``remote_agent.worker.context``, the container runtime, imported lazily so a
kernel that never asks doesn't load it); in the notebook there is none.
"""

from __future__ import annotations

import os


def _worker_context():
    from remote_agent.worker import context

    return context


def is_local() -> bool:
    """``True`` in the notebook (or any process that is not an nbmodal container), ``False`` in a container.

    Example::

        if nbmodal.is_local():
            data = load_from_laptop()
    """
    # The agent gives every container its token; a container that hasn't begun a run yet
    # (its image's preload, a zygote) is a container all the same.
    return not (os.environ.get("NBMODAL_CONTAINER_TOKEN") or _worker_context().in_container())


def current_function_call_id() -> str | None:
    """The id of the function call this container is running (its run id: a ``FunctionCall``'s
    ``object_id``); ``None`` outside a container.

    Example::

        @app.function()
        def f():
            return nbmodal.current_function_call_id()     # "r-1a2b3c4d"
    """
    return _worker_context().function_call_id() or None


def current_input_id() -> str | None:
    """The id of the input being processed (each input of a map has its own); ``None`` outside a container.

    Example::

        @app.function()
        def f(x):
            log.info("input %s", nbmodal.current_input_id())
    """
    return _worker_context().input_id() or None

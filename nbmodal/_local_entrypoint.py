"""``@app.local_entrypoint()``: the function ``nbmodal run file.py`` runs here, as Modal's ``modal run`` does.

A local entrypoint is ordinary Python that runs in this process (it typically calls other functions'
``.remote()``); ``nbmodal run`` turns its parameters into command-line options (``def main(n: int = 3)``
→ ``--n 5``). Calling it directly calls the function; an ``async def`` entrypoint returns its coroutine,
which ``nbmodal run`` runs to completion.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbmodal.app import App


class LocalEntrypoint:
    """What ``@app.local_entrypoint()`` returns: the function, registered on its app under ``name``.

    Example::

        @app.local_entrypoint()
        def main(n: int = 3):
            print(square.remote(n))

        # shell: nbmodal run file.py --n 5
    """

    def __init__(self, fn: Callable[..., Any], app: App, name: str) -> None:
        self.raw_f = fn
        self.app = app
        self.name = name
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<nbmodal.LocalEntrypoint {self.name}>"

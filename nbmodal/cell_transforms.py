"""IPython's preparation of a ``%%remote`` cell, kept by its source.

Before a cell runs, IPython rewrites its source with its static transforms (``TransformerManager``): a
``%%remote`` cell becomes ``get_ipython().run_cell_magic('remote', LINE, BODY)``, which is then
tokenized (in pure Python) in search of more IPython syntax; then it compiles that text to see whether
it needs an event loop (top-level ``await``). ipykernel does both twice per cell (once to choose how to
run it, once to run it): for a warm empty ``%%remote`` cell, more Python than the rest of IPython's and
ipykernel's work on top of a local ``pass`` cell.

Both answers follow from the text alone, so for ``%%remote`` cells they are kept:

- the static transform's result, by source, while the manager's transformers are exactly IPython's own
  (pure functions of the lines they get), unchanged; any other cell, or any cell once someone else's
  transformer is registered, is transformed by IPython as before;
- which of those results need no event loop (IPython's ``_should_be_async`` said so once): given one of
  them, the shell's ``should_run_async`` answers False at once, as IPython's would whatever its settings.

Nothing dynamic is kept: the prefilter and ``input_transformers_post`` run every time (a text they
changed is no longer a kept one), and so does everything after.

Example::

    keep_remote_transforms(get_ipython())   # done by ``%load_ext nbmodal``
    get_ipython().transform_cell("%%remote\\npass")   # the second time: from the kept result
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Only cells of nbmodal's own magic are kept.
_PREFIX = "%%remote"
# The most recent distinct sources, each at most this long (a result, the body's repr, can be a few times
# longer): a notebook has a few dozen %%remote cells, and transforming a larger one costs little beside running it.
MAX_KEPT = 64
MAX_KEPT_SOURCE = 64 * 1024
# The module of IPython's static transforms: each a pure function of the lines it is given.
_IPYTHON_TRANSFORMS = "IPython.core.inputtransformer2"


class KeptTransforms:
    """Stands in for a ``TransformerManager``'s ``transform_cell``: IPython's result, kept for
    ``%%remote`` cells by source (the manager's other methods are untouched)."""

    def __init__(self, manager: Any, never_async: Callable[[str], bool] | None = None) -> None:
        self.manager = manager
        self.transform: Callable[[str], str] = manager.transform_cell  # IPython's own
        # ``not _should_be_async(text)``: for each kept result, whether it runs without an event loop.
        self._never_async = never_async
        self._kept: dict[str, str] = {}
        self._transformers: tuple = ()  # the transformers the kept results came from
        self._pure = False              # whether those are all IPython's own
        # Kept results known to need no event loop (a property of the text alone: kept apart from
        # ``_kept``, which a change of transformers empties), the oldest dropped beyond MAX_KEPT.
        self.sync: dict[str, None] = {}

    def __call__(self, cell: str) -> str:
        if not cell.startswith(_PREFIX) or len(cell) > MAX_KEPT_SOURCE:
            return self.transform(cell)
        manager = self.manager
        transformers = (*manager.cleanup_transforms, *manager.line_transforms, *manager.token_transformers)
        if transformers != self._transformers:  # compared by identity: a transformer added, removed or replaced
            self._kept.clear()
            self._transformers = transformers
            self._pure = all(getattr(t, "__module__", None) == _IPYTHON_TRANSFORMS for t in transformers)
        if not self._pure:
            return self.transform(cell)
        transformed = self._kept.get(cell)
        if transformed is None:
            transformed = self.transform(cell)  # an error (a tokenizer's) is raised, and not kept
            _put(self._kept, cell, transformed)
            if self._never_async is not None and self._never_async(transformed):
                _put(self.sync, transformed, None)
        return transformed


class KeptAsyncCheck:
    """Stands in for a shell's ``should_run_async``: False at once for a kept ``%%remote`` text that
    needs no event loop (what IPython's check answers for it, whatever ``autoawait`` says), else IPython's."""

    def __init__(self, check: Callable[..., bool], kept: KeptTransforms) -> None:
        self.check = check  # IPython's own (bound) method
        self.kept = kept

    def __call__(self, raw_cell: str, **kwargs: Any) -> bool:
        transformed = kwargs.get("transformed_cell")
        if transformed is not None and transformed in self.kept.sync:
            return False
        return self.check(raw_cell, **kwargs)


def _put(kept: dict, key: str, value: Any) -> None:
    if len(kept) >= MAX_KEPT:
        del kept[next(iter(kept))]
    kept[key] = value


def keep_remote_transforms(shell: Any) -> None:
    """Keep IPython's transform of ``shell``'s ``%%remote`` cells and its async check of the result (once
    per shell; a transformer manager or async check other than IPython's own is left alone)."""
    from IPython.core.inputtransformer2 import TransformerManager
    from IPython.core.interactiveshell import InteractiveShell

    manager = getattr(shell, "input_transformer_manager", None)
    if type(manager) is not TransformerManager or isinstance(manager.transform_cell, KeptTransforms):
        return
    never_async = None
    if getattr(type(shell), "should_run_async", None) is InteractiveShell.should_run_async:
        try:
            from IPython.core.async_helpers import _should_be_async
        except ImportError:  # another IPython: its async check stays as it is
            pass
        else:
            def never_async(text: str) -> bool:
                return not _should_be_async(text)
    kept = KeptTransforms(manager, never_async)
    manager.transform_cell = kept  # type: ignore[method-assign]  # on this one manager only: its class is IPython's
    if never_async is not None:
        shell.should_run_async = KeptAsyncCheck(shell.should_run_async, kept)
    log.debug("keeping IPython's transform of %%%%remote cells by source")


def forget_remote_transforms(shell: Any) -> None:
    """Undo ``keep_remote_transforms`` (``%unload_ext nbmodal``)."""
    manager = getattr(shell, "input_transformer_manager", None)
    if manager is not None and isinstance(vars(manager).get("transform_cell"), KeptTransforms):
        del manager.transform_cell
    if isinstance(vars(shell).get("should_run_async"), KeptAsyncCheck):
        del shell.should_run_async

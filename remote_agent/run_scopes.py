"""Which runs a container's own token may start and touch (nested calls).

Code in a container calls ``.remote/.spawn/.map`` of other functions of its app
through its own agent, with the container's token. That token reaches only
runs in the *scope* of the run the container is executing:

- a run started with the agent's token is the root of a scope: ``app:NAME``
  when its request names an app, else ``run:ID`` (a cell, or a function of an
  app without a name: its own run tree);
- a run a container starts inherits the scope of the container's current run;
- a container whose current run is of app ``A`` may start only functions of
  ``A`` (or of no named app), and may follow, attach to, cancel and read only
  runs of its scope. An idle container has no scope.

Anything else is refused as ``ScopeError`` (PERMISSION_DENIED on the wire).
"""

from __future__ import annotations

from collections import OrderedDict

from nbmodal_wire import pb

# Scopes of nested runs are remembered for this many runs (oldest forgotten first).
MAX_REMEMBERED_RUNS = 100_000


class ScopeError(Exception):
    """A container's token asked for a run outside its scope."""


class RunScopes:
    """The scope of every run, and the checks for calls made with a container's token."""

    def __init__(self) -> None:
        self._nested: OrderedDict[str, str] = OrderedDict()  # run id -> scope it inherited
        self._callers: dict[str, str] = {}  # nested run id -> the run whose container started it

    def scope_of(self, run) -> str:
        """``run``'s scope (``runs.Run``): inherited if a container started it, else its own root."""
        inherited = self._nested.get(run.id)
        if inherited is not None:
            return inherited
        request = run.request
        if request is not None and request.app:
            return f"app:{request.app}"
        return f"run:{run.id}"

    def caller_scope(self, container) -> str:
        """The scope of a container's token: that of the run it is executing."""
        run = container.run
        if run is None:
            raise ScopeError(f"container {container.id} has no run in progress, so its token can't start or "
                             f"follow runs; nested calls are made from inside a running function")
        return self.scope_of(run)

    def check_submit(self, scope: str, request: pb.RunRequest) -> None:
        """A container of ``scope`` may start ``request`` (a function of its own app, or of none)."""
        if request.kind != pb.FUNCTION:
            raise ScopeError("a container may start functions only (nested calls), not cells or sessions")
        if request.session:
            raise ScopeError(f"a container may not run in session {request.session!r}: sessions belong to the "
                             f"notebook that started them")
        if scope.startswith("app:") and request.app and request.app != scope[4:]:
            raise ScopeError(f"a function of app {scope[4:]!r} may call functions of its own app only, not of "
                             f"app {request.app!r}; call that one from the notebook, or put both in one App")

    def adopt(self, run_id: str, scope: str, caller_run_id: str = "") -> None:
        """Record that a container of ``scope``, running ``caller_run_id``, started ``run_id``."""
        self._nested[run_id] = scope
        if caller_run_id:
            self._callers[run_id] = caller_run_id
        while len(self._nested) > MAX_REMEMBERED_RUNS:
            forgotten, _ = self._nested.popitem(last=False)
            self._callers.pop(forgotten, None)

    def callers(self, run_id: str) -> list[str]:
        """``run_id`` and the runs that started it, nearest first (a chain of nested calls)."""
        chain = [run_id]
        while (caller := self._callers.get(chain[-1])) is not None and caller not in chain:
            chain.append(caller)
        return chain

    def check_touch(self, scope: str, run) -> None:
        """A container of ``scope`` may follow, attach to, cancel or read ``run``."""
        if self.scope_of(run) != scope:
            raise ScopeError(f"run {run.id} is outside this container's scope ({_describe(scope)}): a container's "
                             f"token reaches only the runs its own app started")


def _describe(scope: str) -> str:
    kind, _, name = scope.partition(":")
    return f"app {name!r}" if kind == "app" else f"the runs started under run {name}"

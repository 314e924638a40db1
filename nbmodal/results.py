"""What a finished run gives back: values, placeholders, or an exception that looks local."""

from __future__ import annotations

import builtins
import importlib
import warnings
from collections.abc import Callable
from typing import Any

from nbmodal import serialization
from nbmodal.exceptions import (
    FunctionTimeoutError,
    GpuUnavailableError,
    ImageBuildError,
    MemoryLimitExceededError,
    NotFoundError,
    ProcessLimitExceededError,
    RemoteError,
    ResourcesUnavailableError,
    RunLostError,
    SlurmJobError,
)
from nbmodal_wire import pb

# Errors the agent reports by kind (it has no pickled exception for them).
_AGENT_ERRORS = {pb.ERROR_GPU_UNAVAILABLE: GpuUnavailableError, pb.ERROR_CONTAINER_DIED: RunLostError,
                 pb.ERROR_RESOURCES_UNAVAILABLE: ResourcesUnavailableError, pb.ERROR_IMAGE_BUILD: ImageBuildError,
                 pb.ERROR_LAUNCH_REFUSED: SlurmJobError, pb.ERROR_MEMORY_LIMIT: MemoryLimitExceededError,
                 pb.ERROR_SECRET: NotFoundError, pb.ERROR_PROCESS_LIMIT: ProcessLimitExceededError}


class ResultWarning(UserWarning):
    """Some values a cell assigned remotely could not be brought back."""


warnings.simplefilter("always", ResultWarning)


class RemoteValue:
    """A value a session kept remote (too large, or not picklable).

    Its repr says what and where it is; ``.fetch()`` downloads it on purpose::

        model            # <RemoteValue 'model': ... kept in session 'train' ...>
        model = model.fetch()
    """

    def __init__(self, session: str, info: pb.ValueInfo, agent_label: str) -> None:
        self.session = session
        self.name = info.name
        self.type_name = info.type_name
        self.size = info.size
        self.reason = info.reason
        self.agent_label = agent_label

    def fetch(self) -> Any:
        """Download the value (however large) from its session."""
        from nbmodal._runtime.connection import connection, session_hosts
        from nbmodal._runtime.transfer import BlobTransfer

        conn = connection(session_hosts.get(self.session))
        client = conn.client()
        reply = client.fetch_value(self.session, self.name)
        if reply.error:
            raise RuntimeError(f"can't fetch {self.name!r} from session {self.session!r}: {reply.error}")
        if reply.value_blob:
            return BlobTransfer.for_connection(conn, client).fetch(reply.value_blob)
        return serialization.loads(reply.value)

    def __repr__(self) -> str:
        where = f"session {self.session!r} on the {self.agent_label}"
        if self.size:  # picklable, but over the size limit
            return (f"<RemoteValue {self.name!r}: {self.type_name}, {_human_size(self.size)}, kept in {where} "
                    f"({self.reason}); {self.name}.fetch() downloads it>")
        return (f"<RemoteValue {self.name!r}: {self.type_name}, lives only in {where}: it can't be pickled "
                f"({self.reason}); use it in `%%remote session={self.session}` cells>")


def cell_values(finished: pb.RunFinished, session: str, agent_label: str,
                fetch_blob: Callable[[str], Any]) -> dict[str, Any]:
    """The names a cell assigned, ready to set in the notebook; warns once about the rest."""
    if not (finished.values or finished.value_blobs or finished.modules or finished.remote_values
            or finished.left_out):
        return {}  # it assigned nothing (a warm cell that only prints, or does nothing)
    values: dict[str, Any] = {}
    problems = [f"`{info.name}` ({info.type_name}): {info.reason}" for info in finished.left_out]
    pickled = [(name, lambda data=data: serialization.loads(data)) for name, data in finished.values.items()]
    pickled += [(name, lambda blob=blob: fetch_blob(blob)) for name, blob in finished.value_blobs.items()]
    for name, load in pickled:
        try:
            values[name] = load()
        except Exception as exc:
            problems.append(f"`{name}`: can't be rebuilt in this kernel ({type(exc).__name__}: {exc})")
    for name, module_name in finished.modules.items():
        try:
            values[name] = importlib.import_module(module_name)
        except ImportError:
            pass  # a module only the remote side has (`import torch` on a GPU host)
    for info in finished.remote_values:
        values[info.name] = RemoteValue(session, info, agent_label)
    if problems:
        warnings.warn("these names were assigned remotely but could not be brought back, so they are "
                      "left out: " + "; ".join(problems), ResultWarning, stacklevel=2)
    return values


def function_result(finished: pb.RunFinished, fetch_blob: Callable[[str], Any]) -> Any:
    if finished.return_blob:
        return fetch_blob(finished.return_blob)
    return serialization.loads(finished.return_value)


def raise_for_state(finished: pb.RunFinished, *, cell: bool = False) -> None:
    """Raise what the run raised, as the same type where this kernel can rebuild it.

    A function over its ``timeout=`` raises Modal's ``FunctionTimeoutError``; a cell, a plain
    ``TimeoutError`` (as a local cell stopped by a timer would)."""
    if finished.state == pb.SUCCEEDED:
        return
    if finished.state == pb.LOST:
        raise RunLostError(finished.error.message or "the run was lost")
    exc = rebuild_exception(finished.error)
    if finished.state == pb.TIMED_OUT and not cell and type(exc) is builtins.TimeoutError:
        # Modal's type for a run over its timeout= (still a built-in TimeoutError for `except TimeoutError`).
        timed_out = FunctionTimeoutError(*exc.args)
        timed_out.__dict__.update(exc.__dict__)
        timed_out.__cause__ = exc.__cause__
        exc = timed_out
    raise exc


def rebuild_error_record(record: bytes) -> BaseException:
    """The exception of a failed map input: its record is a serialized ``pb.ErrorInfo``, the error
    record of a single run, so it is rebuilt exactly as a single run's failure is."""
    return rebuild_exception(pb.ErrorInfo.FromString(record))


def rebuild_exception(error: pb.ErrorInfo) -> BaseException:
    """The exception a run's error record describes: the same type where this kernel can rebuild it,
    with the remote traceback shown instead of nbmodal's frames."""
    exc: Any = None
    if error.exception:
        try:
            exc = serialization.loads(error.exception)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        known = _AGENT_ERRORS.get(error.kind) or getattr(builtins, error.type_name, None)
        if isinstance(known, type) and issubclass(known, BaseException):
            exc = known(error.message)
        else:
            exc = RemoteError(error.type_name, error.message, error.traceback)
    traceback_text = _name_notebook_cells(error.traceback)
    traceback_lines = traceback_text.rstrip("\n").splitlines()
    try:
        # IPython renders this instead of the local frames of nbmodal's internals.
        exc._render_traceback_ = lambda: traceback_lines
        exc.remote_traceback = traceback_text
    except AttributeError:
        pass
    if not isinstance(exc, KeyboardInterrupt):
        exc.__cause__ = _RemoteTraceback(traceback_text)
    return exc


def _name_notebook_cells(traceback_text: str) -> str:
    """Name code from notebook cells as IPython does ("Cell In[3], line 2")."""
    from nbmodal.output import ipython_shell

    shell = ipython_shell()
    numbers = getattr(getattr(shell, "compile", None), "_filename_map", None) or {}
    for filename, number in numbers.items():
        traceback_text = traceback_text.replace(f'File "{filename}", line', f"Cell In[{number}], line")
    return traceback_text


class _RemoteTraceback(Exception):
    """Shows the remote traceback where IPython isn't rendering (scripts, the CLI)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\nRemote traceback:\n" + self.text


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"

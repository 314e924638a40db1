"""Running one cell or function call inside a container.

The notebook sends a cell as source plus its captured names (cloudpickled);
the container executes it in a namespace, displays the last expression, and
pickles back each name the cell assigned, one by one, so that one value that
won't pickle costs only itself.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import logging
import os
import pickle
import signal
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from nbmodal_wire import blobs, pb
from nbmodal_wire.cellcode import names_assigned, parse_cell, split_last_expression
from remote_agent.worker import context as worker_context
from remote_agent.worker import display as display_module
from remote_agent.worker import function_cache
from remote_agent.worker.stdin import end_debugging, explain_debugger_quit, remember_sources

log = logging.getLogger(__name__)

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_VERSION = "%d.%d" % sys.version_info[:2]


class RunTimeout(BaseException):
    """Raised in user code when the run's timeout expires.

    A BaseException so that ``except Exception`` in user code can't swallow it.
    """


@dataclass
class Session:
    """The namespace a session keeps between runs, and the names it created."""

    namespace: dict[str, Any] = field(default_factory=lambda: new_namespace())
    created: set[str] = field(default_factory=set)


def new_namespace() -> dict[str, Any]:
    return {"__name__": "__main__", "__builtins__": __builtins__}


class Interrupts:
    """SIGINT and the timeout alarm raise only while user code is running."""

    def __init__(self) -> None:
        self.executing = False
        self.pending = False  # an interrupt that came before user code started
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.executing:
            raise KeyboardInterrupt
        self.pending = True

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self.executing:
            raise RunTimeout

    def start(self, timeout_s: float) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
        self.executing = True
        if timeout_s > 0:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)

    def stop(self) -> None:
        self.executing = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        end_debugging()


def execute(request: pb.Execute, session: Session | None, interrupts: Interrupts,
            emit_item: Callable[[pb.Item], None] | None = None) -> pb.RunFinished:
    """Run one request; every outcome, including errors, is a RunFinished.

    A generator function's items go to ``emit_item`` as they are produced.
    """
    worker_context.begin_run(request.run_id)  # nbmodal.current_function_call_id() and current_input_id()
    if request.client_python and request.client_python != PYTHON_VERSION:
        return _outcome_of(
            RuntimeError(
                f"the notebook runs Python {request.client_python} but this container runs "
                f"Python {PYTHON_VERSION}; pickled code only moves between equal minor versions. "
                f"Use an image with Python {request.client_python}."
            )
        )
    image_import_error = _bind_image_imports()
    if image_import_error is not None:
        return _outcome_of(image_import_error)
    interrupts.pending = False  # a SIGINT from here on is meant for this run
    if request.debug_sources:
        remember_sources(request.debug_sources)  # pdb shows the lines of code whose file isn't on this host
    if request.cwd and os.path.isdir(request.cwd):
        _enter_directory(request.cwd)
    try:
        if request.kind == pb.CELL:
            return _run_cell(request, session, interrupts)
        return _run_function(request, interrupts, emit_item)
    except BaseException as exc:  # user code, unpickling or packing failed
        return _outcome_of(exc, request.timeout_s)


_image_imports_done = False
_image_import_error: BaseException | None = None


def _bind_image_imports() -> BaseException | None:
    """Run the image's ``with image.imports():`` statements once; their names become builtins.

    As builtins, the names resolve in cells, in functions pickled by value and
    in classes alike, the way module-level imports do for Modal's functions.
    """
    global _image_imports_done, _image_import_error
    if not _image_imports_done:
        _image_imports_done = True
        source = os.environ.get("NBMODAL_IMAGE_IMPORTS", "")
        if source:
            names: dict[str, Any] = {}
            try:
                exec(compile(source, "<image.imports()>", "exec"), names)
            except BaseException as exc:
                _image_import_error = ImportError(f"the image's imports failed in the container: "
                                                  f"{type(exc).__name__}: {exc}")
                return _image_import_error
            import builtins

            for name, value in names.items():
                if name != "__builtins__":
                    setattr(builtins, name, value)
    return _image_import_error


def _run_cell(request: pb.Execute, session: Session | None, interrupts: Interrupts) -> pb.RunFinished:
    namespace = session.namespace if session else new_namespace()
    inputs: dict[str, Any] = _load_payload(request) or {}
    for name, value in inputs.items():
        # A session's own objects are never overwritten by stale notebook copies.
        if session is None or name not in session.created:
            namespace[name] = value

    compile_cell = _compiled_cell if len(request.code) <= MAX_COMPILED_SOURCE else _compile_cell
    body_code, last_code, bound = compile_cell(request.code, request.filename, request.first_line or 1)
    _remember_source(request.filename, request.code, request.first_line or 1)

    error: BaseException | None = None
    value = None
    interrupts.start(request.timeout_s)
    try:
        exec(body_code, namespace)
        value = eval(last_code, namespace) if last_code else None
    except BaseException as exc:  # as in a local cell, what ran before the error stands
        error = exc
    finally:
        interrupts.stop()
    display_module.flush_figures()
    if value is not None:
        data, metadata = display_module.mime_bundle(value)
        display_module.publish(data, metadata, execute_result=True)

    finished = pb.RunFinished(state=pb.SUCCEEDED) if error is None else _outcome_of(error, request.timeout_s)
    assigned = [name for name in bound if name in namespace]
    if session is not None:
        session.created.update(assigned)
        finished.session_names.extend(sorted(session.created))
    _pack_values(finished, namespace, assigned, keep_remote=session is not None,
                 max_bytes=request.max_result_bytes)
    return finished


def _compile_cell(code: str, filename: str, first_line: int) -> tuple[types.CodeType, types.CodeType | None,
                                                                       tuple[str, ...]]:
    """The cell's body and last expression compiled, and the names its top level binds."""
    tree = parse_cell(code, filename, first_line)
    body, last_expression = split_last_expression(tree)
    return (compile(body, filename, "exec"),
            compile(last_expression, filename, "eval") if last_expression else None,
            tuple(names_assigned(tree)))


# A cell run again (the commonest edit loop) is not parsed and compiled again: 70 µs for six lines here.
# Keyed by the exact source, file name and first line (what the code objects' line numbers come from); a
# SyntaxError is raised each time, never kept.
_compiled_cell = functools.lru_cache(maxsize=64)(_compile_cell)
MAX_COMPILED_SOURCE = 64 * 1024


def _pack_values(finished: pb.RunFinished, namespace: dict[str, Any], names: list[str],
                 keep_remote: bool, max_bytes: int) -> None:
    for name in names:
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            finished.modules[name] = value.__name__
            continue
        info = pb.ValueInfo(name=name, type_name=_type_name(value))
        try:
            encoded = blobs.encode(value, _dumps)
        except Exception as exc:
            info.reason = f"{type(exc).__name__}: {exc}"
            (finished.remote_values if keep_remote else finished.left_out).append(info)
            continue
        if keep_remote and max_bytes and encoded.size > max_bytes:
            info.size = encoded.size
            info.reason = f"{encoded.size} bytes pickled, over the {max_bytes}-byte limit"
            finished.remote_values.append(info)
            continue
        if encoded.is_blob:
            finished.value_blobs[name] = _store_blob(encoded)
        else:
            finished.values[name] = encoded.inline


def _run_function(request: pb.Execute, interrupts: Interrupts,
                  emit_item: Callable[[pb.Item], None] | None) -> pb.RunFinished:
    function, args, kwargs = _load_payload(request)
    interrupts.start(request.timeout_s)
    try:
        result = function(*args, **kwargs)
        if request.generator:
            assert emit_item is not None, "a generator run needs somewhere to send its items"
            # An async generator's items are made on the container's event loop; the interrupts still
            # land here, in this thread, and cancel the item being made.
            items = _event_loop().iterate(result) if inspect.isasyncgen(result) else result
            for item in items:  # the generator's own code runs here, under the same interrupts
                encoded = _encode_result(item)
                emit_item(pb.Item(blob=_store_blob(encoded)) if encoded.is_blob else pb.Item(value=encoded.inline))
            return pb.RunFinished(state=pb.SUCCEEDED)
        if type(result) not in _ATOMS and inspect.isawaitable(result):
            result = _event_loop().resolve(result)  # an async def's coroutine runs to its end on the container's loop
    finally:
        interrupts.stop()
    try:
        encoded = _encode_result(result)
    except Exception as exc:
        raise TypeError(
            f"{getattr(function, '__qualname__', function)!s} returned a {_type_name(result)}, "
            f"which can't be pickled back to the notebook ({exc}). Return plain data instead."
        ) from exc
    if encoded.is_blob:
        return pb.RunFinished(state=pb.SUCCEEDED, return_blob=_store_blob(encoded))
    return pb.RunFinished(state=pb.SUCCEEDED, return_value=encoded.inline)


def fetch_value(session: Session | None, name: str) -> pb.FetchValueReply:
    if session is None or name not in session.namespace:
        return pb.FetchValueReply(error=f"no value named {name!r} in this session")
    try:
        encoded = blobs.encode(session.namespace[name], _dumps)
    except Exception as exc:
        return pb.FetchValueReply(error=f"{name} ({_type_name(session.namespace[name])}) can't be pickled: {exc}")
    if encoded.is_blob:
        return pb.FetchValueReply(value_blob=_store_blob(encoded))
    return pb.FetchValueReply(value=encoded.inline)


_ATOMS = frozenset({type(None), bool, int, float, str, bytes})
_PLAIN_ITEMS = 32


def _encode_result(value: Any) -> blobs.Encoded:
    """``blobs.encode(value, _dumps)``; a plain value (an atom, or a short list, tuple or dict of atoms) is
    pickled by ``pickle`` itself, as cloudpickle would, without making a cloudpickle Pickler (~1.5 µs)."""
    kind = type(value)
    if kind in _ATOMS or (
            (kind is tuple or kind is list) and len(value) <= _PLAIN_ITEMS
            and all(type(item) in _ATOMS for item in value)) or (
            kind is dict and len(value) <= _PLAIN_ITEMS
            and all(type(key) in _ATOMS and type(item) in _ATOMS for key, item in value.items())):
        data = pickle.dumps(value, protocol=5)
        if len(data) <= blobs.INLINE_LIMIT:
            return blobs.Encoded(inline=data)
    return blobs.encode(value, _dumps)


def _dumps(value: Any, buffer_callback=None) -> bytes:
    return cloudpickle.dumps(value, protocol=5, buffer_callback=buffer_callback)


def _event_loop() -> Any:
    """The container's event loop module, imported when a run first needs it: asyncio isn't part of a
    container's start (~10 ms of it), and most functions never await anything."""
    from remote_agent.worker import event_loop

    return event_loop


def _load_payload(request: pb.Execute) -> Any:
    if request.payload_path:
        return blobs.read_blob(Path(request.payload_path))
    # A warm call's function pickle, the same bytes again: the function made from it last time (function_cache)
    return function_cache.loads(request.payload) if request.payload else None


def _store_blob(encoded: blobs.Encoded) -> str:
    """Write a large value where the agent (and a notebook on its machine) finds it."""
    blob_id = blobs.new_blob_id()
    blobs.write_blob(Path(os.environ["NBMODAL_BLOB_DIR"]) / blob_id, encoded)
    return blob_id


def error_info(exc: BaseException) -> pb.ErrorInfo:
    explain_debugger_quit(exc)
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        pickled = cloudpickle.dumps(exc, protocol=5)
    except Exception:
        pickled = b""
    return pb.ErrorInfo(type_name=_type_name(exc), message=str(exc), traceback=text, exception=pickled)


def _outcome_of(exc: BaseException, timeout_s: float = 0.0) -> pb.RunFinished:
    if isinstance(exc, RunTimeout):
        return _timed_out(timeout_s)
    state = pb.CANCELLED if isinstance(exc, KeyboardInterrupt) else pb.FAILED
    return pb.RunFinished(state=state, error=error_info(exc))


def _timed_out(timeout_s: float) -> pb.RunFinished:
    message = f"the remote run exceeded its timeout of {timeout_s:g} s and was stopped"
    return pb.RunFinished(
        state=pb.TIMED_OUT,
        error=pb.ErrorInfo(type_name="TimeoutError", message=message,
                           traceback=f"TimeoutError: {message}\n",
                           exception=cloudpickle.dumps(TimeoutError(message))),
    )


def _enter_directory(path: str) -> None:
    """Run in the notebook's directory; its local modules import as they do there."""
    if os.getcwd() != path:
        os.chdir(path)
    if sys.path[0] != path:
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def _remember_source(filename: str, code: str, first_line: int) -> None:
    """Let tracebacks show the cell's lines, numbered as in the notebook."""
    lines = ["\n"] * (first_line - 1) + code.splitlines(keepends=True)
    linecache.cache[filename] = (len(code), None, lines, filename)


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", None) else f"{module}.{cls.__qualname__}"



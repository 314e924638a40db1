"""``nbmodal run file.py[::NAME] [ARGS]``: run a Modal-style program, as Modal's ``modal run`` does.

The file is imported as a module of its own (its directory first on ``sys.path``, so its sibling modules
import), with its functions and classes pickled by value as a notebook's are: the hosts need no copy of
the file. Then the runner picks what to run:

- no NAME: the app's one local entrypoint; else, if the app has no entrypoint and one function, that;
- ``::NAME``: a local entrypoint or ``@app.function`` of that name, ``APP.NAME`` to pick among several
  apps, ``Cls.method`` for a method of an ``@app.cls`` class, or an app's variable name (its entrypoint).

A local entrypoint runs in this process; a function runs with ``.remote()`` (``.remote_gen()`` for a
generator, whose items are printed). The parameters of either become options: ``def main(n: int = 3,
fast: bool = False)`` takes ``--n 5 --fast``; ``--no-fast`` turns a bool off; a parameter without a
default is a required option; ``*args`` takes the rest of the command line as strings unparsed.

Example::

    nbmodal run sweep.py --n 5                # the app's local entrypoint, with n=5
    nbmodal run sweep.py::train --lr 0.1      # train.remote(lr=0.1)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import inspect
import logging
import os
import re
import sys
import traceback
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from nbmodal import _run_blocks
from nbmodal._local_entrypoint import LocalEntrypoint
from nbmodal.app import App, Function
from nbmodal.cls import Cls

log = logging.getLogger(__name__)

# The types a parameter can be parsed as, as in Modal: anything else (or no annotation) is a str.
_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str, int: int, float: float, datetime.datetime: datetime.datetime.fromisoformat,
}


class ScriptError(Exception):
    """The file, or the NAME after ``::``, doesn't name something ``nbmodal run`` can run."""


@dataclass
class Runnable:
    """What ``nbmodal run`` resolved: how to call it, and the signature its options come from."""

    label: str
    call: Callable[..., Any]
    signature_of: Callable[..., Any]


def split_target(target: str) -> tuple[Path, str]:
    """``file.py::NAME`` → (file.py, NAME); ``file.py`` → (file.py, "")."""
    path, _, name = target.partition("::")
    return Path(path), name


def load_script(path: Path) -> types.ModuleType:
    """Import ``path`` as a module of its own; its code travels by value wherever it runs."""
    if not path.is_file():
        raise ScriptError(f"no Python file at {path}")
    path = path.resolve()
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file always has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    cloudpickle.register_pickle_by_value(module)  # as for a notebook's own code: hosts don't have the file
    sys.path.insert(0, str(path.parent))
    spec.loader.exec_module(module)
    return module


def _module_name(path: Path) -> str:
    """The file's stem, as Modal imports it, unless that would shadow a module already loaded (``queue``)."""
    stem = re.sub(r"\W", "_", path.stem)
    if stem.isidentifier() and stem not in sys.modules and not _importable_elsewhere(stem, path):
        return stem
    return f"_nbmodal_script_{stem}"


def _importable_elsewhere(name: str, path: Path) -> bool:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return found is not None and found.origin is not None and Path(found.origin).resolve() != path


def resolve(module: types.ModuleType, name: str) -> Runnable:
    """What ``NAME`` (or, when empty, the module's one obvious choice) names in ``module``."""
    apps = {var: value for var, value in vars(module).items() if isinstance(value, App)}
    if not apps:
        raise ScriptError(f"{module.__file__} defines no nbmodal App (`app = modal.App(...)` at its top level)")
    if not name:
        return _default_runnable(module, apps)
    head, _, tail = name.partition(".")
    if head in apps and tail:
        return _named_in_app(module, apps[head], tail, name)
    if head in apps:
        return _default_runnable(module, {head: apps[head]})
    candidates = [found for app in apps.values() if (found := _find(module, app, name)) is not None]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise ScriptError(f"{name!r} is in several apps of {module.__file__}: write APP.{name} "
                          f"(apps: {', '.join(apps)})")
    raise ScriptError(f"{module.__file__} has no local entrypoint, function or class method {name!r}; "
                      f"it has: {', '.join(_choices(module, apps)) or 'nothing to run'}")


def _named_in_app(module: types.ModuleType, app: App, name: str, full: str) -> Runnable:
    found = _find(module, app, name)
    if found is None:
        raise ScriptError(f"{module.__file__} has no {full!r}; it has: {', '.join(_choices(module, {'': app}))}")
    return found


def _find(module: types.ModuleType, app: App, name: str) -> Runnable | None:
    if name in app.registered_entrypoints:
        return _entrypoint(app.registered_entrypoints[name])
    if name in app.registered_functions:
        return _function(app.registered_functions[name])
    class_name, _, method = name.partition(".")
    cls = vars(module).get(class_name)
    if isinstance(cls, Cls) and method:
        if method not in cls.methods:
            raise ScriptError(f"class {class_name} has no @method {method!r} (its methods: {', '.join(cls.methods)})")
        return _method(cls, method)
    return None


def _default_runnable(module: types.ModuleType, apps: dict[str, App]) -> Runnable:
    entrypoints = [e for app in apps.values() for e in app.registered_entrypoints.values()]
    if len(entrypoints) == 1:
        return _entrypoint(entrypoints[0])
    functions = [f for app in apps.values() for f in app.registered_functions.values()]
    if not entrypoints and len(functions) == 1:
        return _function(functions[0])
    choices = ", ".join(_choices(module, apps)) or "nothing to run"
    raise ScriptError(f"{module.__file__}: say what to run, as `nbmodal run {Path(str(module.__file__)).name}::NAME` "
                      f"(it has: {choices})")


def _choices(module: types.ModuleType, apps: dict[str, App]) -> list[str]:
    names = [*(e for app in apps.values() for e in app.registered_entrypoints),
             *(f for app in apps.values() for f in app.registered_functions)]
    names += [f"{var}.{method}" for var, value in vars(module).items() if isinstance(value, Cls)
              for method in value.methods]
    return names


def _entrypoint(entrypoint: LocalEntrypoint) -> Runnable:
    return Runnable(f"local entrypoint {entrypoint.name}", entrypoint.raw_f, entrypoint.raw_f)


def _function(function: Function) -> Runnable:
    raw = function.raw_f
    if inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw):
        def call(*args: Any, **kwargs: Any) -> None:
            for item in function.remote_gen(*args, **kwargs):
                print(item, flush=True)

        return Runnable(f"function {function.name}", call, raw)
    return Runnable(f"function {function.name}", function.remote, raw)


def _method(cls: Cls, method: str) -> Runnable:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(cls(), method).remote(*args, **kwargs)

    return Runnable(f"method {cls.user_cls.__name__}.{method}", call, getattr(cls.user_cls, method))


def parse_arguments(runnable: Runnable, argv: list[str], prog: str) -> tuple[list[Any], dict[str, Any]]:
    """The (args, kwargs) the command line gives ``runnable``, from its parameters' names and types."""
    signature = inspect.signature(runnable.signature_of)
    parameters = [p for p in signature.parameters.values() if p.name != "self"]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return list(argv), {}  # Modal's escape hatch: the program parses its own arguments
    hints = _type_hints(runnable.signature_of)
    parser = argparse.ArgumentParser(prog=prog, description=f"Run {runnable.label}.")
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_KEYWORD,):
            continue
        _add_option(parser, parameter, hints.get(parameter.name, parameter.annotation))
    parsed = vars(parser.parse_args(argv))
    return [], {name: value for name, value in parsed.items()}


def _add_option(parser: argparse.ArgumentParser, parameter: inspect.Parameter, annotation: Any) -> None:
    kind = _unwrap_optional(annotation)
    flags = [f"--{parameter.name.replace('_', '-')}"]
    if "_" in parameter.name:
        flags.append(f"--{parameter.name}")
    required = parameter.default is inspect.Parameter.empty
    default = None if required else parameter.default
    if kind is bool:
        parser.add_argument(*flags, dest=parameter.name, action=argparse.BooleanOptionalAction,
                            required=required, default=default)
        return
    parse = _PARSERS.get(kind, str)
    parser.add_argument(*flags, dest=parameter.name, type=parse, required=required, default=default,
                        metavar=getattr(kind, "__name__", "VALUE").upper())


def _unwrap_optional(annotation: Any) -> Any:
    """``Optional[int]`` / ``int | None`` → ``int``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation this process can't evaluate: the raw one (or str) will do
        return {}


def run_script(target: str, argv: list[str], host: str | None = None, detach: bool = False) -> int:
    """Load ``target`` (``file.py[::NAME]``), run what it names with ``argv``; returns an exit code.

    ``host`` sends the app's functions and classes that name no host of their own to that host. It runs
    as in ``with app.run(detach=detach):`` (nbmodal/_run_blocks.py): with ``detach`` its runs are detached
    and go on after it ends (or is interrupted); without, runs it spawned that are still going are stopped.
    A failure prints its traceback (the remote one included) and returns 1.
    """
    path, name = split_target(target)
    try:
        module = load_script(path)
        if host:
            _place_on(module, host)
        runnable = resolve(module, name)
    except ScriptError as exc:
        print(f"nbmodal run: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        print(f"nbmodal run: importing {path} failed:", file=sys.stderr)
        _print_user_traceback(exc)
        return 1
    args, kwargs = parse_arguments(runnable, argv, prog=f"nbmodal run {target}")
    block = _run_blocks.enter(detach)
    try:
        result = runnable.call(*args, **kwargs)
        if inspect.isawaitable(result):
            asyncio.run(_awaited(result))
    except KeyboardInterrupt:
        if detach:
            print("nbmodal run: interrupted; its detached runs go on (`nbmodal runs`)", file=sys.stderr)
        raise
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        print(f"nbmodal run: {runnable.label} of {path} failed:", file=sys.stderr)
        _print_user_traceback(exc)
        return 1
    finally:
        _run_blocks.leave(block)
    return 0


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _place_on(module: types.ModuleType, host: str) -> None:
    """``--host``: every function and class of the file's apps without a ``host=`` of its own runs there."""
    for value in list(vars(module).values()):
        if isinstance(value, App):
            for function in value.registered_functions.values():
                if not function.host:
                    function.host = host
        elif isinstance(value, Cls):
            if not value.options.get("host"):
                value.options["host"] = host


def _print_user_traceback(exc: BaseException) -> None:
    """The traceback from the user's own code on: the runner's frames say nothing about the failure."""
    here = os.path.abspath(__file__)
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    sys.stderr.flush()

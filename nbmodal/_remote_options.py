"""The ``%%remote`` options, declared once.

``REMOTE_OPTIONS`` is the one list of the ``key=value`` options a ``%%remote``
line takes: each entry parses its value into a ``CellOptions`` field and
carries the help text the magic shows (``%%remote?``) and the name of the
Modal keyword it mirrors. The parser, the help text and the "unknown option"
error are all built from it, so a new option is one new entry here (and its
field in ``nbmodal.remote_cell.CellOptions``).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from nbmodal.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_MAX_RESULT_BYTES
from nbmodal.remote_cell import CellOptions

DETACH_HELP = "return at once with a live widget; the run goes on if the kernel dies"

_SESSION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
               "g": 1e9, "gb": 1e9, "gib": 1024**3}


@dataclass(frozen=True)
class RemoteOption:
    """One ``key=value`` option of ``%%remote``."""

    name: str                     # the key on the %%remote line
    field: str                    # the CellOptions attribute it sets
    parse: Callable[[str], Any]   # the value as typed → the field's value; raises UsageError saying what's wrong
    help: str                     # what it does, for %%remote?
    default: str = ""             # the default as the help shows it ("" when the default is "none")
    modal: str = ""               # the Modal keyword it mirrors ("" for nbmodal's own)
    # False: its value is checked against state that changes (host=: the hosts file), so a line with it is
    # parsed every time rather than once (cell_options)
    cached: bool = True

    def describe(self) -> str:
        """``name=VALUE (what it does; default …)``, as the help lists it."""
        return self.help + (f" (default {self.default})" if self.default else "")


def _usage(message: str) -> UsageError:
    return UsageError(f"%%remote: {message}")


def _parse_host(value: str) -> str:
    from nbmodal.hosts import LOCAL, HostError, get_host

    if value != LOCAL:
        try:
            get_host(value)
        except HostError as exc:
            raise _usage(str(exc)) from None
    return value


def _parse_gpu(value: str) -> str:
    from nbmodal_wire.gpu_request import GpuRequestError, parse_gpu_request

    try:
        parse_gpu_request(value)
    except GpuRequestError as exc:
        raise _usage(str(exc)) from None
    return value


def _positive_number(key: str, unit: str, strip_suffix: str = "") -> Callable[[str], float]:
    """A parser of numbers above 0 (of ``unit``); ``strip_suffix`` allows ``30s`` for seconds."""

    def parse(value: str) -> float:
        try:
            number = float(value.rstrip(strip_suffix) if strip_suffix else value)
        except ValueError:
            raise _usage(f"{key}={value!r} must be a number of {unit}") from None
        if number <= 0:
            raise _usage(f"{key}= must be more than 0 {unit}, got {value!r}")
        return number

    return parse


def _parse_cpu(value: str) -> float | tuple[float, float]:
    """``cpu=2`` (cores reserved), or ``cpu=1:4`` for Modal's ``cpu=(request, limit)``."""
    number = _positive_number("cpu", "cores")
    request, sep, limit = value.partition(":")
    if not sep:
        return number(value)
    pair = (number(request), number(limit))
    if pair[1] < pair[0]:
        raise _usage(f"cpu={value!r}: the limit is below the request; write cpu=REQUEST:LIMIT, like cpu=1:4")
    return pair


def _parse_memory(value: str) -> int | tuple[int, int]:
    """``memory=4096`` (MiB reserved), or ``memory=4096:8192`` for Modal's ``memory=(request, limit)``."""
    parts = value.split(":")
    if len(parts) > 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise _usage(f"memory={value!r} must be a whole number of MiB, like memory=4096, or REQUEST:LIMIT "
                     f"in MiB, like memory=4096:8192")
    if len(parts) == 1:
        return int(value)
    request, limit = int(parts[0]), int(parts[1])
    if limit < request:
        raise _usage(f"memory={value!r}: the limit is below the request; write memory=REQUEST:LIMIT, "
                     f"like memory=4096:8192")
    return request, limit


def _parse_volumes(value: str) -> dict[str, str]:
    """``ckpt:/ckpt,data:/data`` → {mount path: volume name}."""
    from nbmodal_wire.names import check_mount_path, check_name

    mounts: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",") if p.strip()):
        name, sep, path = part.partition(":")
        if not sep or not name or not path:
            raise _usage(f"volumes={value!r}: each mount is NAME:/path, like ckpt:/ckpt")
        try:
            check_name("volume", name)
            path = check_mount_path(name, path)
        except ValueError as exc:  # InvalidNameError, MountError
            raise _usage(str(exc)) from None
        if path in mounts:
            raise _usage(f"two volumes are mounted at {path}")
        mounts[path] = name
    return mounts


def _parse_secrets(value: str) -> tuple[Any, ...]:
    """``hf,wandb`` → the named secrets (each read on the host when the run starts)."""
    from nbmodal.exceptions import InvalidError
    from nbmodal.secret import Secret

    names = [name.strip() for name in value.split(",") if name.strip()]
    try:
        return tuple(Secret.from_name(name).to_proto() for name in names)
    except InvalidError as exc:
        raise _usage(f"secrets={value!r}: {exc}") from None


def _parse_map(value: str) -> tuple[str, str]:
    name, sep, source = value.partition(":")
    if not sep or not name.isidentifier() or not source.isidentifier():
        raise _usage(f"map={value!r} must be NAME:LIST, like map=lr:lrs (run the cell once "
                     f"per value of the notebook list lrs, bound to lr)")
    return name, source


def _whole_number(name: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise _usage(f"{name}={value!r} must be a whole number ≥ 1")
        return int(value)

    return parse


def _parse_session(value: str) -> str:
    if not _SESSION_NAME.fullmatch(value):
        raise _usage(f"session name {value!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def _parse_size(value: str) -> int:
    match = _SIZE.match(value)
    if not match or (match.group(2) or "").lower() not in _SIZE_UNITS:
        raise _usage(f"max_result={value!r} is not a size (e.g. 64MiB, 500MB, 1000000)")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])


def _format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}"


REMOTE_OPTIONS: tuple[RemoteOption, ...] = (
    RemoteOption("host", "host", _parse_host,
                 "host=NAME: run on this host (one added with `nbmodal host add`, or local)", cached=False),
    # The magic resolves the name against %%image names and notebook variables.
    RemoteOption("image", "image", str, "image=NAME: run in this image (a %%image name or a notebook Image)",
                 modal="image"),
    RemoteOption("gpu", "gpu", _parse_gpu,
                 "gpu=TYPE[:COUNT][,FALLBACK…]: GPUs for the container (any, T4, L4, A10G, A100-80GB, H100, …)",
                 modal="gpu"),
    RemoteOption("cpu", "cpu", _parse_cpu,
                 "cpu=CORES[:LIMIT]: cores reserved for the container, and the most it may use",
                 modal="cpu"),
    RemoteOption("memory", "memory", _parse_memory,
                 "memory=MIB[:LIMIT]: memory reserved for the container, and the most it may use "
                 "(above it the run fails)", modal="memory"),
    RemoteOption("volumes", "volumes", _parse_volumes, "volumes=NAME:/path[,NAME:/path…]: volumes to mount",
                 modal="volumes"),
    RemoteOption("secrets", "secrets", _parse_secrets,
                 "secrets=NAME[,NAME…]: named secrets (`nbmodal secret create`) as environment variables",
                 modal="secrets"),
    RemoteOption("map", "map", _parse_map,
                 "map=NAME:LIST: a sweep, the cell once per value of the notebook list LIST, in parallel",
                 modal="Function.map"),
    RemoteOption("session", "session", _parse_session, "session=NAME: keep the namespace across cells"),
    RemoteOption("nodes", "nodes", _whole_number("nodes"),
                 "nodes=N: a gang of N containers on N hosts, started together, with torchrun's environment",
                 default="1", modal="clustered(size=)"),
    RemoteOption("procs_per_node", "procs_per_node", _whole_number("procs_per_node"),
                 "procs_per_node=K: torchrun runs the cell K times in each node's container", default="1"),
    RemoteOption("timeout", "timeout", _positive_number("timeout", "seconds", strip_suffix="s"),
                 "timeout=SECONDS: stop the run after this long", modal="timeout"),
    RemoteOption("grace", "grace", _positive_number("grace", "seconds", strip_suffix="s"),
                 "grace=SECONDS: after an interrupt, before the container is killed",
                 default=_format_seconds(DEFAULT_CANCEL_GRACE_S)),
    RemoteOption("max_result", "max_result_bytes", _parse_size,
                 "max_result=SIZE: session values above it stay remote",
                 default=_format_size(DEFAULT_MAX_RESULT_BYTES)),
)

_BY_NAME = {option.name: option for option in REMOTE_OPTIONS}


def option_names() -> str:
    """``host, image, …``: the keys, in the table's order."""
    return ", ".join(option.name for option in REMOTE_OPTIONS)


def options_help() -> str:
    """The help text of the ``key=value`` options (``%%remote?`` shows it)."""
    return "key=value: " + "; ".join(option.describe() for option in REMOTE_OPTIONS)


def parse_cell_options(tokens: list[str], detach: bool) -> CellOptions:
    """``key=value`` tokens of the %%remote line, with errors that say what's wrong."""
    options = CellOptions(detach=detach)
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().lower()
        if not sep or not value:
            raise _usage(f"expected key=value, got {token!r} (options: {option_names()})")
        option = _BY_NAME.get(key)
        if option is None:
            raise _usage(f"unknown option {key!r} (options: {option_names()}, --detach)")
        setattr(options, option.field, option.parse(value))
    return options


def cell_options(tokens: tuple[str, ...], detach: bool) -> CellOptions:
    """``parse_cell_options``, each distinct line parsed once (a warm cell repeats its line); a line with an
    option that isn't ``cached`` (host=) is parsed every time. Always a new ``CellOptions`` (the magic
    fills in its image); a mistake raises the same UsageError every time.

    Example::

        cell_options(("gpu=H100", "timeout=600"), False).timeout  # 600.0
    """
    if not tokens or not all(_BY_NAME.get(token.partition("=")[0].strip().lower(), _UNCACHED).cached
                             for token in tokens):
        return parse_cell_options(list(tokens), detach)
    options = copy.copy(_parsed_line(tokens, detach))
    options.volumes = dict(options.volumes)
    return options


_UNCACHED = RemoteOption("", "", str, "", cached=False)  # an unknown key: parse_cell_options names it


@functools.lru_cache(maxsize=64)
def _parsed_line(tokens: tuple[str, ...], detach: bool) -> CellOptions:
    return parse_cell_options(list(tokens), detach)

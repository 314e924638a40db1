"""Names and paths both sides check: run ids, Dict/Queue/Volume names, mount paths.

The client checks them before anything travels (a clear error in the cell);
the agent checks them again, since any client may call it.

    >>> check_name("Dict", "results-v2")
    >>> check_mount_path("ckpt", "/ckpt/")
    '/ckpt'
"""

from __future__ import annotations

import os
import re
import secrets

RUN_ID = re.compile(r"r-[0-9a-f]{8}")

NAME_RULE = "1-64 characters of letters, digits, '-', '_' and '.'"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Mounting over these would break the container (or the host, with symlinks).
_SYSTEM_PATHS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                 "/sbin", "/sys", "/usr", "/var")



def new_run_id() -> str:
    """A fresh run id, chosen by the client so it can cancel a run before the agent answers."""
    return "r-" + secrets.token_hex(4)


class InvalidNameError(ValueError):
    """A Dict, Queue, Volume or partition name that is not allowed."""


def check_name(kind: str, name: str) -> None:
    """Refuse a name that is not ``NAME_RULE``; ``kind`` ("Dict", "volume") names the thing in the error."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidNameError(f"{kind} name {shown(name)} is not allowed: use {NAME_RULE}")
    if name in (".", ".."):  # a volume's directory would be its parent: deleting it would delete the state dir
        raise InvalidNameError(f"{kind} name {name!r} is not allowed: it names a directory, not a {kind}")


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut after ``limit`` characters (a 10 KiB name stays readable)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, (str, bytes)) else ""
    return f"{text[:limit]}…{size}"


class MountError(ValueError):
    """A volume mount path that is not allowed."""


def check_mount_path(volume: str, path: str) -> str:
    """A normalized absolute mount path, or a clear refusal."""
    if not path.startswith("/") or "\x00" in path:
        raise MountError(f"volume {volume!r}: mount path {path!r} must be an absolute path like /ckpt")
    normalized = os.path.normpath(path)
    if ".." in path.split("/"):
        raise MountError(f"volume {volume!r}: mount path {path!r} must not contain '..'")
    if normalized in _SYSTEM_PATHS or any(normalized.startswith(p + "/") for p in _SYSTEM_PATHS[1:]):
        raise MountError(f"volume {volume!r}: can't mount over the system path {normalized}; use a path like /ckpt "
                         f"or /data")
    return normalized

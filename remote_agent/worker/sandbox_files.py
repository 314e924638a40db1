"""A sandbox's file operations, run inside it: ``python -m remote_agent.worker.sandbox_files REQUEST``.

The agent (remote_agent/sandboxes.py) starts this as a process in the sandbox's container, so a path
means what it means to the sandbox's own commands: its mounts, its private /tmp, its working directory.
REQUEST is JSON: ``{"op", "path", "flag", "workdir", "roots", "own_top"}``. A relative path is taken
from ``workdir``. The path, with ``..`` and symlinks resolved, must lie within one of ``roots`` (the
sandbox's working directory, /tmp, its volumes) or, with ``own_top``, in a top-level directory of the
sandbox's own root (one the host's / doesn't have, say /data); anything else is refused, so neither
``../..`` nor a symlink reaches the host's files or the agent's state through this API.

``read`` writes the file to stdout; ``write`` replaces it with stdin; ``ls`` writes one name a line;
``stat`` writes "file", "directory", "other" or nothing. A failure exits 2 with JSON
``{"type", "message"}`` on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from typing import Any

# Top-level directories the sandbox's bubblewrap makes itself: never "its own" for files.
_SYSTEM_TOP = frozenset({"proc", "dev", "sys", "run", "tmp"})


class Refused(Exception):
    """The path is outside what the sandbox's file API may touch."""


def resolve(path: str, workdir: str, roots: list[str], own_top: list[str] | None) -> str:
    """The absolute, resolved path; Refused when it escapes the sandbox's own directories.

    ``own_top``: the host's top-level names (a top-level name outside them is the sandbox's own),
    or None when the sandbox has no root of its own (no bubblewrap).
    """
    absolute = os.path.normpath(os.path.join(workdir or "/", path))
    resolved = os.path.realpath(absolute)
    for root in roots:
        real_root = os.path.realpath(root)
        if _within(resolved, real_root):
            return resolved
    if own_top is not None:
        top = resolved.strip("/").split("/", 1)[0]
        if top and top not in own_top and top not in _SYSTEM_TOP:
            return resolved
    shown = ", ".join(roots) + (", or a new top-level directory" if own_top is not None else "")
    via = f" (it resolves to {resolved})" if resolved != path else ""
    raise Refused(f"{path!r} is outside the sandbox's own files{via}: its file operations reach {shown}")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def run(request: dict[str, Any], stdin: Any, stdout: Any) -> None:
    op, flag = request["op"], bool(request.get("flag"))
    path = resolve(request["path"], request.get("workdir", ""), request.get("roots", []), request.get("own_top"))
    if op == "read":
        with open(path, "rb") as file:
            shutil.copyfileobj(file, stdout)
    elif op == "write":
        with open(path, "wb") as file:
            shutil.copyfileobj(stdin, file)
    elif op == "ls":
        stdout.write("".join(f"{name}\n" for name in sorted(os.listdir(path))).encode())
    elif op == "mkdir":
        if flag:
            os.makedirs(path, exist_ok=True)
        else:
            os.mkdir(path)
    elif op == "rm":
        if os.path.isdir(path) and not os.path.islink(path):
            if flag:
                shutil.rmtree(path)
            else:
                os.rmdir(path)  # refuses a non-empty one, as Modal's rm without recursive=True does
        else:
            os.unlink(path)
    elif op == "stat":
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return
        kind = "directory" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"
        stdout.write(kind.encode())
    else:
        raise ValueError(f"unknown file operation {op!r}")


def main(argv: list[str]) -> int:
    try:
        run(json.loads(argv[1]), sys.stdin.buffer, sys.stdout.buffer)
    except Refused as exc:
        _fail("OutsideSandbox", str(exc))
        return 2
    except OSError as exc:
        message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        _fail(type(exc).__name__, message)
        return 2
    except ValueError as exc:
        _fail("ValueError", str(exc))
        return 2
    return 0


def _fail(kind: str, message: str) -> None:
    sys.stderr.write(json.dumps({"type": kind, "message": message}))


if __name__ == "__main__":
    sys.exit(main(sys.argv))

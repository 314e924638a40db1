"""Mounting volumes into a container: a bubblewrap mount namespace, or the host's own paths.

With ``bwrap`` a container sees the host's filesystem as it is, plus each
volume bind-mounted at its path, in a mount namespace of its own (so two
containers can mount different volumes at the same path). Without it, a path
is made to work with a symlink to the volume when the host allows, and the
error says so clearly when it doesn't.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

# Mounting over these would break the container (or the host, with symlinks).
_SYSTEM_PATHS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                 "/sbin", "/sys", "/usr", "/var")


class MountError(Exception):
    pass


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


@functools.lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """Whether bubblewrap can make a mount namespace here (it can't in every container or VM)."""
    if shutil.which("bwrap") is None:
        return False
    trial = subprocess.run(["bwrap", "--dev-bind", "/", "/", "true"], capture_output=True, timeout=10)
    return trial.returncode == 0


def bwrap_argv(mounts: list[tuple[Path, str]]) -> list[str]:
    """bwrap arguments: the host's top-level entries as they are, then each volume at its path."""
    argv = ["bwrap"]
    for entry in sorted(os.listdir("/")):
        path = "/" + entry
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        else:
            argv += ["--dev-bind", path, path]
    for host_dir, path in mounts:
        argv += ["--bind", str(host_dir), path]
    return argv + ["--"]


def link_without_sandbox(mounts: list[tuple[Path, str]]) -> None:
    """Without bubblewrap: the path becomes a symlink to the volume, where the host allows it."""
    for host_dir, path in mounts:
        if os.path.islink(path) and Path(os.readlink(path)) == host_dir:
            continue
        if os.path.lexists(path):
            raise MountError(f"can't mount a volume at {path}: bubblewrap isn't available on this host and {path} "
                             f"already exists. Install bubblewrap (apt-get install bubblewrap) or choose a path that "
                             f"doesn't exist.")
        try:
            os.symlink(host_dir, path)
        except OSError as exc:
            raise MountError(f"can't mount a volume at {path}: bubblewrap isn't available on this host and {path} "
                             f"can't be created ({exc.strerror}). Install bubblewrap (apt-get install bubblewrap) "
                             f"or mount it under a directory you own, e.g. ~/ckpt.") from None

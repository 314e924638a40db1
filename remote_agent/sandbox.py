"""Sandboxing containers with bubblewrap, and mounting volumes without it.

``outer_argv`` is the bwrap prefix a worker or a zygote runs under. Inside it
the process has all capabilities in a user namespace of its own, so it can make
its own mount namespace (remote_agent/worker/mounts.py: volumes, a private
/tmp, only its own GPUs) and then drop them. The network and the pid
namespace are the host's: the agent signals workers by their real pids.

The host's filesystem is visible at the same paths, by this rule:

* the system directories (/usr, /etc, /bin, /sbin, /lib*, /opt, /var, /boot,
  /srv, /snap, /nix) and top-level files are read-only;
* every other top-level directory (/home, /root, /mnt, /media, /work, /data,
  ...) is writable: that's where users keep code, data and caches;
* /proc is the host's pid namespace's, /sys read-only, /dev minimal plus the
  GPU (/dev/nvidia*, /dev/dri) and RDMA nodes, /dev/shm and /tmp private
  tmpfs, /run a tmpfs with only name resolution's and the NVIDIA daemons'
  sockets bound back;
* ``hidden`` directories (the agent's state, the agent user's ``~/.ssh``) are empty tmpfs, and each
  ``shown`` path is bound back at its own path (the blob dir, volumes, images).

Without bubblewrap, a volume's path is made to work with a symlink to the
volume when the host allows, and the error says so clearly when it doesn't.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from nbmodal_wire.names import MountError, check_mount_path  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

# Top-level directories bound read-only in the sandbox (besides every /lib*).
_READ_ONLY_TOP = frozenset({"usr", "etc", "bin", "sbin", "opt", "var", "boot", "srv", "snap", "nix"})
# Top-level entries the sandbox makes itself rather than binding the host's.
_MADE_TOP = frozenset({"proc", "dev", "sys", "tmp", "run", "lost+found"})
# Device nodes a container may need beyond bwrap's minimal /dev: GPUs (NVIDIA, DRM) and RDMA for NCCL.
_DEVICE_GLOBS = ("/dev/nvidia*", "/dev/dri", "/dev/infiniband")
# What under /run must stay reachable: systemd-resolved (/etc/resolv.conf often points there) and the
# NVIDIA daemons whose sockets the driver talks to.
_RUN_KEPT = ("/run/systemd/resolve", "/run/resolvconf", "/run/nvidia-persistenced", "/run/nvidia-fabricmanager")


def outer_argv(hidden: list[str], shown: list[tuple[str, bool]], host_tmp: bool = False,
               network: bool = True) -> list[str]:
    """The bwrap command prefix (ending in ``--``) to run a worker or a zygote in the sandbox.

    ``hidden`` directories appear empty; each ``shown`` (path, writable) is then
    bound back at its own path, so a path under a hidden one can be shown.
    Shown paths must exist. With ``host_tmp`` the host's /tmp stays visible (else
    it is a private tmpfs). Without ``network`` it gets a network namespace of its
    own with only a loopback (a Sandbox's ``block_network=True``). See the module
    docstring for the rest of the view.
    """
    argv = ["bwrap", "--unshare-user", "--cap-add", "ALL"]  # caps only within its own user namespace
    if not network:
        argv.append("--unshare-net")
    for entry in sorted(os.listdir("/")):
        path = "/" + entry
        if entry in _MADE_TOP:
            continue
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif not os.path.isdir(path) or entry in _READ_ONLY_TOP or entry.startswith("lib"):
            argv += ["--ro-bind", path, path]
        else:
            argv += ["--bind", path, path]
    argv += _proc_argv()
    argv += ["--ro-bind", "/sys", "/sys", "--dev", "/dev", "--tmpfs", "/dev/shm"]
    for pattern in _DEVICE_GLOBS:
        for node in sorted(glob.glob(pattern)):
            argv += ["--dev-bind", node, node]
    # host_tmp: the host's /tmp, for containers that work like the notebook's own process.
    argv += ["--bind", "/tmp", "/tmp"] if host_tmp else ["--tmpfs", "/tmp"]
    argv += ["--tmpfs", "/run"]
    for path in _run_paths_kept():
        argv += ["--ro-bind", path, path]
    for path in hidden:
        if os.path.isdir(path):  # a missing one has nothing to hide (and bwrap would create it on the host)
            argv += ["--tmpfs", path]
    for path, writable in shown:
        argv += ["--bind" if writable else "--ro-bind", path, path]
    for path in _runtime_paths():
        # The agent's Python and our sources (with nbmodal beside them), should /tmp or a hidden dir hold them.
        if (not host_tmp and _within(path, "/tmp")) or any(_within(path, h) for h in hidden):
            argv += ["--ro-bind", path, path]
    return argv + ["--"]


def credential_dirs() -> list[str]:
    """The agent user's directories a container must not see (``~/.ssh``), hidden where they exist.

    Both ``$HOME``'s and the password database's home count: an agent started with another HOME
    still runs as the same user.
    """
    homes = {os.path.expanduser("~")}
    try:
        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # a uid without a passwd entry (some containers)
        pass
    return sorted({os.path.realpath(os.path.join(home, ".ssh")) for home in homes if home})


def _runtime_paths() -> list[str]:
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, package_root)}
    return sorted(paths)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.lru_cache(maxsize=1)
def sandbox_available() -> bool:
    """Whether ``outer_argv`` works here: bwrap exists and may make a user namespace."""
    if shutil.which("bwrap") is None:
        return False
    try:
        trial = subprocess.run(outer_argv([], []) + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("bubblewrap can't sandbox containers here: %s", exc)
        return False
    if trial.returncode != 0:
        log.warning("bubblewrap can't sandbox containers here: %s", trial.stderr.decode(errors="replace").strip())
    return trial.returncode == 0


@functools.lru_cache(maxsize=1)
def _proc_argv() -> list[str]:
    """A fresh /proc where the kernel allows one; else the host's bound.

    Mounting procfs in a user namespace fails where parts of /proc are masked
    (as in a Docker container), so bwrap would fail as a whole.
    """
    try:
        trial = subprocess.run(["bwrap", "--unshare-user", "--dev-bind", "/", "/", "--proc", "/proc", "true"],
                               capture_output=True, timeout=10)
        if trial.returncode == 0:
            return ["--proc", "/proc"]
    except (OSError, subprocess.SubprocessError):
        pass
    return ["--bind", "/proc", "/proc"]


def _run_paths_kept() -> list[str]:
    kept = [path for path in _RUN_KEPT if os.path.isdir(path)]
    # /etc/resolv.conf may point anywhere under /run (NetworkManager, netconfig...): keep its directory.
    resolv = os.path.realpath("/etc/resolv.conf")
    if resolv.startswith("/run/") and os.path.exists(resolv):
        directory = os.path.dirname(resolv)
        if not any(directory == path or directory.startswith(path + "/") for path in kept):
            kept.append(directory)
    return kept


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

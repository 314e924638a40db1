"""A container's own mount namespace, made by the worker before it serves.

The worker (spawned, or forked from a zygote) runs inside the agent's
bubblewrap sandbox (remote_agent/sandbox.py) with all capabilities in its own
user namespace. ``enter`` uses them once: a private mount namespace with the
container's binds (volumes, image files, its working directory), a private
/tmp and only its own GPU device nodes; then it drops every capability so the
user's code can't undo any of it.

The layout is a JSON-able dict::

    {"sandboxed": bool, "private_tmp": bool,
     "binds": [[host_path, container_path, writable], ...],
     "gpu_devices": null | [gpu index, ...]}

A bind's host path must be visible in the sandbox (under a shown path); its
mount point is created where missing, which must be possible: on the
sandbox's own root (/ckpt, /data) or in a writable host directory (/root/x,
where the empty mount point then stays on the host). The private /tmp keeps
what the sandbox itself bound under /tmp. ``gpu_devices`` null leaves every
/dev/nvidiaN as it is. Unknown keys (the worker's "workdir") are ignored.

Without the sandbox ``enter`` does nothing: the agent makes volumes reachable
itself with sandbox.link_without_sandbox before it starts the worker.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from typing import Any

from nbmodal_wire.names import MountError

# <linux/sched.h>, <linux/mount.h>, <linux/prctl.h>, <linux/capability.h>
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MNT_DETACH = 2
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# statvfs flags -> the mount flags a bind's read-only remount must keep (a user namespace may not clear them).
_KEPT_FLAGS = ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC),
               (os.ST_NOATIME, _MS_NOATIME), (os.ST_NODIRATIME, _MS_NODIRATIME), (os.ST_RELATIME, _MS_RELATIME))
_GPU_NODE = re.compile(r"nvidia(\d+)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def enter(layout: dict[str, Any]) -> None:
    """Make the container's mounts in a namespace of its own, then give up the power to change them.

    Raises MountError for a bind that can't be made as asked, OSError for
    what the kernel refuses.
    """
    if not layout.get("sandboxed"):
        return
    libc = _libc()
    _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Nothing mounted here propagates back to the sandbox shared with other containers.
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "making / private")
    if layout.get("gpu_devices") is not None:
        _hide_gpus(libc, {int(index) for index in layout["gpu_devices"]})
    # Every source is opened before the private /tmp can cover it (a scratch dir may live under /tmp).
    binds = [(_open_source(host), host, os.path.normpath(path), bool(writable))
             for host, path, writable in layout.get("binds", [])]
    if layout.get("private_tmp"):
        # What the sandbox bound under /tmp (the agent's dirs, when its state lives there) stays visible.
        kept = [(_open_source(path), path, path, not os.statvfs(path).f_flag & os.ST_RDONLY)
                for path in _mount_points_under("/tmp")]
        _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=1777"), "mounting /tmp")
        binds = kept + binds
    try:
        for source, host_path, path, writable in binds:
            _bind(libc, source, host_path, path, writable)
    finally:
        for source, *_ in binds:
            os.close(source)
    _own_user_namespace(libc)
    _drop_capabilities(libc)


def _open_source(host_path: str) -> int:
    try:
        return os.open(host_path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise MountError(f"can't mount {host_path}: {exc.strerror} in the sandbox (is it among the shown "
                         f"paths?)") from None


def _bind(libc: ctypes.CDLL, source: int, host_path: str, path: str, writable: bool) -> None:
    """Bind the opened ``source`` at ``path``, making the mount point as needed."""
    is_dir = os.path.isdir(f"/proc/self/fd/{source}")
    try:
        if is_dir:
            os.makedirs(path, exist_ok=True)
        elif not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as exc:
        raise MountError(f"can't mount {host_path} at {path}: its mount point can't be created ({exc.strerror}); "
                         f"the system directories are read-only in a container, so pick a path like /data or "
                         f"/root/x") from None
    if is_dir != os.path.isdir(path):
        kind = "a directory" if is_dir else "a file"
        raise MountError(f"can't mount {kind} ({host_path}) at {path}: something of the other kind is there")
    _check(libc.mount(f"/proc/self/fd/{source}".encode(), path.encode(), None, _MS_BIND | _MS_REC, None),
           f"bind-mounting {host_path} at {path}")
    if not writable:
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        mounted = os.statvfs(path).f_flag
        flags |= sum(ms for st, ms in _KEPT_FLAGS if mounted & st)
        _check(libc.mount(None, path.encode(), None, flags, None), f"making {path} read-only")


def _mount_points_under(directory: str) -> list[str]:
    """The outermost mount points strictly below ``directory``, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(directory + "/"):
                points.append(point)
    points = list(dict.fromkeys(points))  # a point mounted over twice counts once
    return [p for p in points if not any(p.startswith(q + "/") for q in points)]


def _hide_gpus(libc: ctypes.CDLL, allowed: set[int]) -> None:
    """Cover every GPU node but the container's own with an unopenable file.

    Opening one then fails with EACCES, as under a devices cgroup (Slurm,
    Docker), which CUDA and NVML take as "not this GPU's". /dev/null instead
    would open and fail every ioctl, which the driver may take as an error.
    The file lives on a tmpfs mounted for the moment at /tmp: nothing is left
    behind in a directory other containers share.
    """
    hidden = [name for name in sorted(os.listdir("/dev"))
              if (match := _GPU_NODE.fullmatch(name)) and int(match.group(1)) not in allowed]
    if not hidden:
        return
    _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=700"), "mounting a scratch /tmp")
    denied = "/tmp/denied"
    os.close(os.open(denied, os.O_CREAT | os.O_WRONLY, 0))
    os.chmod(denied, 0)  # the umask doesn't matter: no permission bits at all
    for name in hidden:
        _check(libc.mount(denied.encode(), f"/dev/{name}".encode(), None, _MS_BIND, None), f"hiding /dev/{name}")
    _check(libc.umount2(b"/tmp", _MNT_DETACH), "unmounting the scratch /tmp")  # the binds keep the file


def _own_user_namespace(libc: ctypes.CDLL) -> None:
    """A user namespace of this container's own, below the sandbox's, mapping only its own ids.

    Containers forked from one image's zygote share the zygote's user namespace, and the kernel lets a
    process of a namespace read a sibling's ``/proc/PID/root`` (its private /tmp), ``environ`` and
    ``mem`` when its capabilities are no fewer. From a namespace of its own it needs CAP_SYS_PTRACE in
    the sibling's, which it never has. A host that refuses a nested namespace (an AppArmor policy on
    bubblewrap's children) keeps the shared one, said once in the container's log.
    """
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER) != 0:
        code = ctypes.get_errno()
        os.write(2, f"nbmodal: this container shares its image's user namespace with the image's other "
                    f"containers (unshare(CLONE_NEWUSER): {os.strerror(code)})\n".encode())
        return
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        except FileNotFoundError:  # setgroups: a kernel older than 3.19 has none
            continue


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """No capabilities, now or after any exec: mounts stay as they are."""
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        last_cap = 63  # dropping an unknown capability is an EINVAL, skipped
    for cap in range(last_cap + 1):  # the bounding set too, while CAP_SETPCAP still allows it
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            _check(-1, f"dropping capability {cap} from the bounding set")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero: no effective, permitted or inheritable capabilities
    _check(libc.capset(ctypes.byref(header), data), "dropping capabilities")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own libc, without a library search
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")

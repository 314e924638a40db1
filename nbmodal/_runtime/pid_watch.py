"""Whether a local process is still alive, asked often and cheaply.

A warm call asks whether the local agent still runs twice; ``pid_alive`` answers with a signal
and a read of ``/proc/<pid>/stat`` (to tell a zombie). A pidfd answers the same question with one
``poll``: it becomes readable when its process has ended, zombie or reaped, and it can't be fooled
by a recycled pid.

Example::

    from nbmodal._runtime.pid_watch import alive
    alive(os.getpid())  # True
"""

from __future__ import annotations

import os
import select
import threading

from nbmodal_wire.pids import pid_alive

_pidfds: dict[int, int] = {}
_lock = threading.Lock()
_MAX_WATCHED = 64  # agents a kernel talks to are few; beyond this, fall back to pid_alive


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie nobody reaped is not alive)."""
    fd = _pidfd(pid)
    if fd is None:
        return pid_alive(pid)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(0):
        return True
    with _lock:  # it ended: forget it, so that a new process with its pid is watched anew
        if _pidfds.get(pid) == fd:
            del _pidfds[pid]
            os.close(fd)
    return False


def _pidfd(pid: int) -> int | None:
    fd = _pidfds.get(pid)
    if fd is not None or pid <= 0 or not hasattr(os, "pidfd_open"):
        return fd
    if not pid_alive(pid):  # not (or no longer) the process asked about: nothing to watch
        return None
    with _lock:
        if pid in _pidfds:
            return _pidfds[pid]
        if len(_pidfds) >= _MAX_WATCHED:
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # no pidfds here (Linux < 5.3, a seccomp filter), or it just ended
            return None
        _pidfds[pid] = fd
        return fd

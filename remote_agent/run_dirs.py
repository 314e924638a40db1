"""Run directories recycled, not created: a pruned run's directory becomes the next new run's.

Creating a file or directory (a new inode) is what a run's log costs the file system: on some disks
(ext4 on a VM, measured) ~0.5-0.9 ms of CPU each, against ~10-30 µs to rename, truncate or rewrite a
file that exists, and a short warm run made four (its directory, ``events.log``, ``info.pb.tmp``
twice). So the writer thread (runs.py) keeps the directories of runs it prunes as spares, emptied, in
``runs/.spare/``, and a new run's directory is a spare renamed; ``info.pb`` is replaced by writing
``info.pb.tmp`` and exchanging the two names (``renameat2(RENAME_EXCHANGE)``: atomic, as a rename
over it is, but the old inode stays as the next ``info.pb.tmp``); a spare's ``info.pb.tmp`` becomes the
new run's first ``info.pb``. In steady state a warm call creates no inode at all.

The layout readers see is unchanged: ``runs/<run_id>/{info.pb,events.log,output.log}`` (plus
``info.pb.tmp``, which no reader opens); a spare has no ``info.pb``, so no reader takes it for a run,
and one renamed into place is empty. Where exchange isn't supported the info is replaced as before
(``os.replace``).

    made = claim_spare(run_dir)        # False: no spare (mkdir it)
    write_info_file(run_dir, info, fresh=made)
    retire(run_dir)                    # a pruned run's directory: a spare, or removed
    adopt_spares(runs_dir)             # at start: spares an earlier agent left
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import shutil
from pathlib import Path

from nbmodal_wire.pids import pid_alive

log = logging.getLogger(__name__)

SPARE_DIR = ".spare"
# Spares kept per runs dir: a prune retires keep/10 runs at once (runs.py: 50 by default), and each new
# run takes one, so this covers a batch with room to spare; beyond it, pruned directories are removed.
MAX_SPARES = 128
# The files a clean spare may hold (events.log empty); anything else of the run is removed.
_KEPT = frozenset({"events.log", "info.pb.tmp"})
_USUAL = ("events.log", "info.pb", "info.pb.tmp")  # what a run's directory usually holds

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_pools: dict[str, list[str]] = {}  # runs dir -> its spares (list.pop/append: atomic, used from two threads)
_numbers = itertools.count()


def _renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # releases the GIL while it runs
    except (AttributeError, OSError):  # a libc without it (glibc < 2.28, musl)
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_exchange_call = _renameat2()


def _exchange(a: str, b: str) -> bool:
    """Swap the names ``a`` and ``b`` atomically; False where that can't be done here (b missing, or no
    support: the caller renames instead)."""
    global _exchange_call
    if _exchange_call is None:
        return False
    if _exchange_call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL):  # the kernel or this file system can't: never ask again
        _exchange_call = None
    return False  # ENOENT (no info.pb yet), or another error: a plain rename says what it is


def write_file(path: str, data: bytes | bytearray, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_info_file(run_dir: Path | str, info: bytes, fresh: bool = False) -> None:
    """Replace ``info.pb`` atomically (a reader sees the old info or the new), reusing its inodes;
    ``fresh``: the directory was just made (a spare's, or new), so there is no info.pb yet."""
    tmp, path = f"{run_dir}/info.pb.tmp", f"{run_dir}/info.pb"
    # Overwritten in place, then cut to length: not O_TRUNC, since a file truncated to nothing and
    # rewritten is flushed to disk at close (ext4's auto_da_alloc), which costs ten times the write.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        _write_all(fd, info)
        os.ftruncate(fd, len(info))
    finally:
        os.close(fd)
    if not fresh and _exchange(tmp, path):
        return
    os.replace(tmp, path)  # the first info (a warm call's only one): info.pb.tmp becomes it


def claim_spare(run_dir: Path) -> bool:
    """Make ``run_dir`` out of a spare; False when there is none (or ``run_dir`` exists already)."""
    pool = _pools.get(str(run_dir.parent))
    while pool:
        try:
            spare = pool.pop()
        except IndexError:  # the other thread took the last one
            return False
        try:
            os.rename(spare, run_dir)
            return True
        except FileNotFoundError:  # the spare is gone (its runs dir was removed): try the next
            continue
        except OSError:  # run_dir exists (a later write of its run): the spare stays one
            pool.append(spare)
            return False
    return False


def retire(run_dir: Path) -> None:
    """A pruned run's directory: kept as a spare (emptied), or removed when there are enough."""
    pool = _pools.setdefault(str(run_dir.parent), [])
    if len(pool) < MAX_SPARES:
        spare = f"{run_dir.parent}/{SPARE_DIR}/{os.getpid()}-{next(_numbers)}"
        try:
            try:
                os.rename(run_dir, spare)  # gone from the runs at once, as a removal is
            except FileNotFoundError:
                if not run_dir.exists():
                    return
                os.makedirs(f"{run_dir.parent}/{SPARE_DIR}", exist_ok=True)
                os.rename(run_dir, spare)
        except OSError:
            pass  # removed below instead
        else:
            if _clean(spare):
                pool.append(spare)
            return
    _remove(run_dir)


def adopt_spares(runs_dir: Path) -> None:
    """Take up the spares of agents that are gone (their pid is in the name), emptied again."""
    pool = _pools.setdefault(str(runs_dir), [])
    try:
        names = os.listdir(runs_dir / SPARE_DIR)
    except OSError:
        return
    for name in names:
        path = f"{runs_dir}/{SPARE_DIR}/{name}"
        pid, _, _ = name.partition("-")
        if path in pool or (pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))):
            continue  # ours already, or a live agent's (one handing over to this one) that it may use
        if len(pool) < MAX_SPARES and _clean(path):
            pool.append(path)
        else:
            _remove(Path(path))


def _clean(spare: str) -> bool:
    """Empty a spare: no info.pb (so it is no run), an empty events.log; its inodes otherwise kept."""
    try:
        present = set(os.listdir(spare))
        for name in sorted(present):
            path = f"{spare}/{name}"
            if name == "events.log":
                os.truncate(path, 0)
            elif name == "info.pb":
                if "info.pb.tmp" in present:  # a run whose info was written more than once: one is enough
                    os.unlink(path)
                else:
                    os.rename(path, f"{spare}/info.pb.tmp")  # the next run's first info is written in it
            elif name not in _KEPT:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
    except OSError as exc:
        log.debug("spare run dir %s could not be emptied (%s); removing it", spare, exc)
        _remove(Path(spare))
        return False
    return True


def _remove(run_dir: Path) -> None:
    """A directory of a run's files: its files, then itself (shutil.rmtree for anything more)."""
    for name in _USUAL:  # no listing for the usual run's files (each a system call, and the GIL given up)
        try:
            os.unlink(f"{run_dir}/{name}")
        except FileNotFoundError:
            pass
        except OSError:
            break
    try:
        os.rmdir(run_dir)
        return
    except FileNotFoundError:
        return
    except OSError:  # more in it than the usual files
        pass
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    try:
        for name in names:
            try:
                os.unlink(f"{run_dir}/{name}")
            except FileNotFoundError:
                pass
        os.rmdir(run_dir)
    except OSError:  # a subdirectory, or something it can't remove file by file
        shutil.rmtree(run_dir, ignore_errors=True)

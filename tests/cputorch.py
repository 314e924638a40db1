"""A CPU build of torch for the multi-node tests' real ``torch.distributed`` runs, installed once per machine.

``cpu_torch()`` installs ``torch==CPU_TORCH`` (a CPU wheel, ~190 MB: pip finds it through this machine's
own pip configuration, e.g. its wheel folder) with its dependencies into one directory under the temp
dir, readable by the test hosts' users, and returns it for a container's ``PYTHONPATH``; the next session
on the same machine reuses it. None when pip finds no such build here (the tests then say so and skip:
the socket-level all-reduce of tests/allreduce.py still runs).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CPU_TORCH = "2.13.0+cpu"
_ROOT = Path(tempfile.gettempdir()) / f"nbm-cputorch-{CPU_TORCH}"
_READY = _ROOT / ".installed"


@functools.cache
def cpu_torch() -> Path | None:
    """The directory with torch in it, installing it first if needed (under a lock: sessions may race)."""
    if _READY.exists():
        return _ROOT
    lock_path = Path(tempfile.gettempdir()) / f"nbm-cputorch-{CPU_TORCH}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _READY.exists():
            return _ROOT
        shutil.rmtree(_ROOT, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "--target", str(_ROOT), f"torch=={CPU_TORCH}"],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            shutil.rmtree(_ROOT, ignore_errors=True)
            return None
        for directory, _, files in os.walk(_ROOT):  # the hosts' users read it, whatever this umask
            os.chmod(directory, 0o755)
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444)
        _READY.write_text(CPU_TORCH)
    return _ROOT

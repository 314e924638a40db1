"""What a run's output may cost: a cap on what its followers are sent, a capped full log on disk.

A container printing as fast as it can must not grow the agent's memory, fill the
disk, or bury the notebook. So, per run:

- **Shown**: the first ``NBMODAL_RUN_OUTPUT_CAP_MIB`` (default 4 MiB) of output
  become events, which followers (the notebook, ``nbmodal attach``, the sidebar)
  get as they come. Beyond it output is left out of the events; one marker line
  says so at once, and another at the end says how much was left out and where
  the full output is.
- **Kept in full**: every byte of output also goes to ``runs/<id>/output.log``,
  both streams in order, capped at ``NBMODAL_RUN_OUTPUT_LOG_MIB`` (default
  64 MiB) with one rotation (``output.log.1``): at most twice that on disk per run.

Small outputs are not delayed: the cap only counts bytes, and the full log is
written off the event loop with the run's events. Example::

    gate = OutputGate(cap_bytes=4 << 20)
    if gate.admit(len(data)):
        ...  # an event
"""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1 << 20
DEFAULT_CAP_MIB = 4.0
DEFAULT_LOG_MIB = 64.0
OUTPUT_LOG = "output.log"


def _mib_setting(name: str, default: float) -> int:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        value = default
    return max(1024, int(value * MIB))


def output_cap_bytes() -> int:
    """Output a run's followers are sent before the rest is left out (``NBMODAL_RUN_OUTPUT_CAP_MIB``)."""
    return _mib_setting("NBMODAL_RUN_OUTPUT_CAP_MIB", DEFAULT_CAP_MIB)


def output_log_bytes() -> int:
    """The size at which ``output.log`` rotates (``NBMODAL_RUN_OUTPUT_LOG_MIB``)."""
    return _mib_setting("NBMODAL_RUN_OUTPUT_LOG_MIB", DEFAULT_LOG_MIB)


def size_text(n: int) -> str:
    """``1.5 MiB``, ``12 KiB``, ``80 bytes``."""
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


class OutputGate:
    """Counts a run's output against its cap: what is shown, and what was left out."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self.shown_bytes = 0
        self.left_out_bytes = 0
        self.left_out_chunks = 0

    def admit(self, size: int) -> bool:
        """Whether a chunk of ``size`` bytes is shown (else it is counted as left out)."""
        if self.left_out_bytes == 0 and self.shown_bytes + size <= self.cap_bytes:
            self.shown_bytes += size
            return True
        self.left_out_bytes += size
        self.left_out_chunks += 1
        return False

    def first_marker(self, log_path: Path) -> str:
        return (f"\n[nbmodal: this run's output is over its {size_text(self.cap_bytes)} limit, so what follows is "
                f"left out here; the full output is in {log_path} (NBMODAL_RUN_OUTPUT_CAP_MIB sets the limit)]\n")

    def final_marker(self, log_path: Path) -> str:
        return (f"\n[nbmodal: {size_text(self.left_out_bytes)} of output ({self.left_out_chunks} chunks) was left out "
                f"of this run's {size_text(self.shown_bytes)} shown; the full output is in {log_path} "
                f"(its last {size_text(2 * output_log_bytes())} at most)]\n")


def append_rotating(path: Path, data: bytes | bytearray, max_bytes: int) -> None:
    """Append to ``path``; once it would pass ``max_bytes`` it becomes ``path.1`` (replacing an older one)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size and size + len(data) > max_bytes:
        os.replace(path, path.with_name(path.name + ".1"))
    if len(data) > max_bytes:  # one chunk over the whole cap: its end is what a log keeps
        data = data[-max_bytes:]
    with open(path, "ab") as f:
        f.write(data)

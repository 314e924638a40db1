"""``nbmodal.stream_type``: Modal's ``StreamType``, where a sandbox process's output goes (``sb.exec(stdout=...)``).

``PIPE`` (the default) keeps it for ``p.stdout``/``p.stderr``; ``DEVNULL`` discards it; ``STDOUT``
prints it here as it comes (and keeps it too).

    p = sb.exec("make", stdout=StreamType.STDOUT)
"""

from __future__ import annotations

import enum

__all__ = ["StreamType"]


class StreamType(enum.IntEnum):
    """Where a sandbox process's output stream goes."""

    DEVNULL = -1
    PIPE = 1
    STDOUT = 2

"""Where nbmodal keeps its state, and the defaults a user may change."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_RESULT_BYTES = 16 * 1024 * 1024
DEFAULT_CANCEL_GRACE_S = 10.0


def nbmodal_home() -> Path:
    """``$NBMODAL_HOME``, else ``~/.nbmodal``."""
    return Path(os.environ.get("NBMODAL_HOME") or "~/.nbmodal").expanduser()


def local_agent_dir() -> Path:
    """State dir of the embedded local agent."""
    return nbmodal_home() / "agent"

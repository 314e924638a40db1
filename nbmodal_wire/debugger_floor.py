"""One debugging session at a time: who may ask the user for the next line.

Several runs (a map's batches) or threads (``@nbmodal.concurrent`` inputs) can stop at a breakpoint at
once. Taking turns prompt by prompt would interleave their pdb sessions, so the floor stays with one
session from its first prompt until the user lets it go on (``c``, ``q``, end of input) — or until it has
asked nothing for ``hold_s`` seconds (a step that runs long, or code that left the debugger another way),
so that the others are never blocked for good. The container (per thread) and the notebook (per run)
both keep one.

    floor = DebuggerFloor()
    floor.take("r-1")          # blocks while another session holds it
    line = input("(Pdb) ")
    floor.answered("r-1", line)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

# pdb commands after which the session doesn't ask again (until the next breakpoint, a new session).
_ENDS_SESSION = frozenset({"c", "cont", "continue", "q", "quit", "exit"})
HOLD_S = 30.0


def ends_session(line: str | None) -> bool:
    """Whether answering ``line`` (None: end of input) lets the debugged code go on or stop."""
    if line is None:
        return True
    last = line.split(";;")[-1].split()
    return bool(last) and last[0] in _ENDS_SESSION


class DebuggerFloor:
    """Which session (a run id, a thread id) may prompt now."""

    def __init__(self, hold_s: float = HOLD_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._hold_s = hold_s
        self._clock = clock
        self._changed = threading.Condition()
        self._holder: Hashable | None = None
        self._until = 0.0  # the holder keeps the floor until then, asking or not

    def take(self, who: Hashable) -> None:
        """Wait until ``who`` may prompt, and hold the floor while it does."""
        with self._changed:
            while self._holder not in (None, who) and self._clock() < self._until:
                left = self._until - self._clock()
                self._changed.wait(timeout=None if left == float("inf") else max(0.01, left))
            self._holder, self._until = who, float("inf")

    def answered(self, who: Hashable, line: str | None) -> None:
        """``who``'s prompt got ``line``: its session goes on holding the floor a while, or ends."""
        with self._changed:
            if self._holder != who:
                return
            if ends_session(line):
                self._holder = None
            else:
                self._until = self._clock() + self._hold_s
            self._changed.notify_all()

    def release(self, who: Hashable) -> None:
        """``who`` asks no more (its run ended, its read was interrupted)."""
        with self._changed:
            if self._holder == who:
                self._holder = None
                self._changed.notify_all()

    def release_all(self) -> None:
        """Whoever holds the floor, it is free (a new run in a container)."""
        with self._changed:
            self._holder = None
            self._changed.notify_all()

"""How a container's process ended, in words: the real signal or exit code.

A container's return code reaches the agent three ways: from the agent's own
child (a spawned worker: negative, the signal), from a zygote that reaped a
forked worker (the same), or from bubblewrap around a sandboxed worker, which
can't pass a signal on and exits with 128 + the signal's number instead (as a
shell does). ``describe_exit`` turns each into one phrase::

    >>> describe_exit(-11)
    'was killed by SIGSEGV (segmentation fault)'
    >>> describe_exit(139, sandboxed=True)
    'was killed by SIGSEGV (segmentation fault)'
    >>> describe_exit(3)
    'exited with code 3'
"""

from __future__ import annotations

import signal

# bubblewrap's (and a shell's) code for a child killed by signal N is 128 + N.
SIGNAL_EXIT_BASE = 128


def signal_of(returncode: int | None, sandboxed: bool = False) -> signal.Signals | None:
    """The signal that ended a process with this return code, or None when it exited by itself."""
    if returncode is None:
        return None
    number = -returncode if returncode < 0 else returncode - SIGNAL_EXIT_BASE if sandboxed else 0
    try:
        return signal.Signals(number) if number > 0 else None
    except ValueError:  # not a signal this platform knows: an ordinary exit code
        return None


def describe_signal(signum: signal.Signals) -> str:
    """``SIGSEGV (segmentation fault)``: the name and what it means."""
    meaning = (signal.strsignal(signum) or "").rstrip(".")
    if not meaning or meaning.lower() == "killed":  # SIGKILL's says nothing its name doesn't
        return signum.name
    return f"{signum.name} ({meaning[:1].lower()}{meaning[1:]})"


def describe_exit(returncode: int | None, sandboxed: bool = False) -> str:
    """What ended a process, as the rest of a sentence starting with the process's name."""
    if returncode is None:
        return "ended, with no exit status to tell how"
    signum = signal_of(returncode, sandboxed)
    if signum is not None:
        return f"was killed by {describe_signal(signum)}"
    return f"exited with code {returncode}"

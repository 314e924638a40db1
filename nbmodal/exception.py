"""``nbmodal.exception``: Modal's exception types, under Modal's module name.

nbmodal's own errors are these types or subclasses of them: ``NotFoundError``
is the one nbmodal raises for anything the agent doesn't have,
``RemoteError`` a remote exception whose type can't be rebuilt here,
``GpuUnavailableError`` an ``InvalidError``, ``AgentError`` a
``ConnectionError``, ``RunLostError`` an ``ExecutionError``::

    from nbmodal.exception import NotFoundError

    try:
        q = nbmodal.Queue.from_name("jobs")
    except NotFoundError:
        q = nbmodal.Queue.from_name("jobs", create_if_missing=True)
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading

from nbmodal.exceptions import (
    AlreadyExistsError,
    AuthError,
    ClientClosed,
    ConnectionError,
    DeprecationError,
    DeserializationError,
    Error,
    ExecutionError,
    FilesystemExecutionError,
    FunctionTimeoutError,
    InputCancellation,
    InteractiveTimeoutError,
    InternalFailure,
    InvalidError,
    ModuleNotMountable,
    MountUploadTimeoutError,
    NotAvailableError,
    NotFoundError,
    OutputExpiredError,
    PendingDeprecationError,
    RemoteError,
    RequestSizeError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    SerializationError,
    ServerWarning,
    TimeoutError,
    VersionError,
    VolumeUploadTimeoutError,
)

log = logging.getLogger(__name__)

# Modal's second interrupt (its SIGKILL) follows the first after this long.
_SECOND_INTERRUPT_AFTER_S = 30.0


def simulate_preemption(wait_seconds: int, jitter_seconds: int = 0) -> None:
    """Preempt this container after ``wait_seconds`` (plus up to ``jitter_seconds``), as its host would:
    SIGINT first (``KeyboardInterrupt`` in the running code), SIGKILL 30 seconds later.

    Only inside a container (a function or ``%%remote`` cell): in the notebook it would stop the kernel.

    Example::

        @app.function(retries=3)
        def train():
            simulate_preemption(3)
            try:
                time.sleep(4)
            except KeyboardInterrupt:
                save_checkpoint()
                raise
    """
    from nbmodal._runtime.context import is_local

    if is_local():
        raise InvalidError("simulate_preemption() works inside a container (a function or %%remote cell); "
                           "here it would interrupt this process itself")
    delay = wait_seconds + random.uniform(0, jitter_seconds)
    pid = os.getpid()

    def preempt() -> None:
        log.info("simulate_preemption: SIGINT to container %d", pid)
        os.kill(pid, signal.SIGINT)
        kill = threading.Timer(_SECOND_INTERRUPT_AFTER_S, os.kill, (pid, signal.SIGKILL))
        kill.daemon = True
        kill.start()

    timer = threading.Timer(delay, preempt)
    timer.daemon = True
    timer.start()


__all__ = [
    "AlreadyExistsError", "AuthError", "ClientClosed", "ConnectionError", "DeprecationError",
    "DeserializationError", "Error", "ExecutionError", "FilesystemExecutionError", "FunctionTimeoutError",
    "InputCancellation", "InteractiveTimeoutError", "InternalFailure", "InvalidError", "ModuleNotMountable",
    "MountUploadTimeoutError", "NotAvailableError", "NotFoundError", "OutputExpiredError",
    "PendingDeprecationError", "RemoteError", "RequestSizeError", "SandboxTerminatedError", "SandboxTimeoutError",
    "SerializationError", "ServerWarning", "TimeoutError", "VersionError", "VolumeUploadTimeoutError",
    "simulate_preemption",
]

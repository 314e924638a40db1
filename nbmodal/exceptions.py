"""Errors nbmodal raises, as Modal's exception types (``nbmodal.exception``) and nbmodal's own.

Modal's names come first, with Modal's hierarchy (``Error`` at the root,
``FunctionTimeoutError`` a ``TimeoutError``, ``InputCancellation`` a
``BaseException``); nbmodal's own errors are those types or subclasses of
them, so Modal code that catches ``modal.exception.NotFoundError`` catches
nbmodal's, and code written for nbmodal keeps its names::

    try:
        nbmodal.Dict.from_name("missing")
    except nbmodal.exception.NotFoundError as exc:   # also nbmodal.NotFoundError
        print(exc)
"""

from __future__ import annotations

import builtins

# -- Modal's exception types ----------------------------------------------------------------


class Error(Exception):
    """Base class of every error nbmodal (or Modal) raises for its own reasons, not the user's code's.

    Example::

        try:
            f.remote()
        except nbmodal.Error as exc:
            print("nbmodal could not run it:", exc)
    """


class NbmodalError(Error):
    """Base class for nbmodal's own errors (not the user's remote exceptions); it
    renders in IPython as one line."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows our errors as one clear message, not a stack of our internals.
        return [f"{type(self).__name__}: {self}"]


class AlreadyExistsError(Error):
    """Something created under a name that is already taken."""


class AuthError(Error):
    """Missing or invalid credentials (on nbmodal: an agent refused this client's token)."""


class ClientClosed(Error):
    """A call on a client that was closed."""


class ConnectionError(Error):  # noqa: A001 - Modal's name; builtins.ConnectionError stays reachable
    """The agent (Modal: the servers) could not be reached."""


class DeserializationError(Error):
    """A value could not be unpickled; the message says which and why."""


class SerializationError(Error):
    """A value could not be pickled to be sent; the message says which and why."""


class ExecutionError(Error):
    """Something unexpected happened while running: a container died, a run was lost."""


class FilesystemExecutionError(Error):
    """An unknown error during a container filesystem operation."""


class InternalFailure(Error):
    """A failure of the system itself, worth retrying."""


class InvalidError(Error):
    """Something used the wrong way; the message says what to do instead."""


class NotAvailableError(InvalidError):
    """A Modal feature that nbmodal has not built yet (the message names it and the issue to follow)."""


class NotFoundError(NbmodalError):
    """Something the agent was asked for isn't there: a named Dict, Queue or Volume (the message lists
    those that do), a file in a volume, a run, session, container, image or blob.

    Not a ``KeyError``: a missing key of a ``Dict`` is a ``KeyError``, as for a dict, and a bug that
    raises ``KeyError`` must never read as "not found".
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteError(Error):
    """A remote exception whose type can't be rebuilt in this kernel.

    ``remote_type`` is the remote type's name, ``remote_traceback`` its
    formatted traceback.
    """

    def __init__(self, remote_type: str, message: str = "", remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}" if message else remote_type)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class RequestSizeError(Error):
    """A request too large for the agent to take."""


class SandboxTerminatedError(Error):
    """A Sandbox was terminated for an internal reason."""


class VersionError(Error):
    """This client's version can't work with the other side's."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - Modal's name
    """Base class of timeouts; also a built-in ``TimeoutError``, so ``except TimeoutError`` catches it."""


class FunctionTimeoutError(TimeoutError):
    """A function ran longer than its ``timeout=``."""


class InteractiveTimeoutError(TimeoutError):
    """An interactive frontend timed out connecting to a container."""


class MountUploadTimeoutError(TimeoutError):
    """Uploading local files for a container timed out."""


class OutputExpiredError(TimeoutError):
    """A result was asked for after it expired (on nbmodal: a detached result is kept for a day)."""


class SandboxTimeoutError(TimeoutError):
    """A Sandbox ran longer than its timeout."""


class VolumeUploadTimeoutError(TimeoutError):
    """A Volume upload timed out."""


class InputCancellation(BaseException):
    """The current input was cancelled.

    A ``BaseException``, as in Modal, so that ``except Exception`` in user code (retry loops and the
    like) doesn't swallow it.
    """


class ModuleNotMountable(Exception):
    """A module that can't be sent to containers as source."""


class DeprecationError(UserWarning, DeprecationWarning):
    """Warning category: a deprecated Modal feature or API was used.

    A ``UserWarning`` as in Modal, and a ``DeprecationWarning`` too, so Python's own filters for
    deprecations (``-W error::DeprecationWarning``, pytest's) apply to it.
    """


class PendingDeprecationError(UserWarning, PendingDeprecationWarning):
    """Warning category: a feature that will soon be deprecated."""


class ServerWarning(UserWarning):
    """Warning category: a warning from the agent, re-issued here."""


class NoEffectWarning(UserWarning):
    """Warning category: a Modal keyword accepted for compatibility that means nothing on one's own hosts
    (``region=``, ``cloud=``…). Each keyword warns once per process."""


# -- nbmodal's own errors -------------------------------------------------------------------


class CaptureError(NbmodalError, SerializationError):
    """A notebook variable the cell reads can't be sent; nothing ran remotely."""


class AgentError(NbmodalError, ConnectionError):
    """The agent couldn't be started, reached or understood."""


class AgentLostError(AgentError, builtins.ConnectionError):
    """The agent stopped while a run was in progress."""


class VersionMismatchError(AgentError, VersionError):
    """Client and agent (or container) can't work together as installed."""


class ResourcesUnavailableError(NbmodalError, InvalidError):
    """A ``cpu=`` or ``memory=`` request the host can never meet."""


class GpuUnavailableError(ResourcesUnavailableError):
    """A ``gpu=`` request that no reachable host can ever meet."""


class InvalidGpuError(NbmodalError, InvalidError, ValueError):
    """A ``gpu=`` of a function or class that doesn't parse or names an unknown type (raised at decoration)."""


class RunLostError(NbmodalError, ExecutionError):
    """The run's container died (or the run was lost with its agent)."""


class MemoryLimitExceededError(NbmodalError, ExecutionError, MemoryError):
    """The run's container went over its ``memory=(request, limit)`` limit and was killed; the message
    names the limit and the peak. Also a ``MemoryError``, as running out of memory locally would be."""


class ProcessLimitExceededError(NbmodalError, ExecutionError):
    """The run's container reached its process limit (a fork bomb, or a pool starting too many processes)
    and was killed; the message names the limit. The agent's ``NBMODAL_CONTAINER_PIDS_MAX`` sets it."""


class ImageDefinitionError(NbmodalError, InvalidError, ValueError):
    """An ``Image`` (or ``%%image`` cell) defined wrongly; raised before anything is built."""


class ImageBuildError(NbmodalError):
    """An image failed to build on its host (the message names the failing step and its output)."""


class SlurmJobError(NbmodalError):
    """Slurm refused a container's job, or the job can never start as asked (Slurm's own message)."""


def not_available(feature: str, why: str = "") -> NotAvailableError:
    """The error for a Modal feature nbmodal doesn't have yet, naming it (and why, where it helps)."""
    return NotAvailableError(f"{feature} is not available on nbmodal yet" + (f": {why}" if why else "")
                             + " (see the README's 'Modal compatibility' table for what is)")

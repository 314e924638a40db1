"""Errors nbmodal raises in the notebook."""

from __future__ import annotations


class NbmodalError(Exception):
    """Base class for nbmodal's own errors (not the user's remote exceptions)."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows our errors as one clear message, not a stack of our internals.
        return [f"{type(self).__name__}: {self}"]


class CaptureError(NbmodalError):
    """A notebook variable the cell reads can't be sent; nothing ran remotely."""


class AgentError(NbmodalError):
    """The agent couldn't be started, reached or understood."""


class AgentLostError(AgentError, ConnectionError):
    """The agent stopped while a run was in progress."""


class VersionMismatchError(AgentError):
    """Client and agent (or container) can't work together as installed."""


class RemoteError(Exception):
    """A remote exception whose type can't be rebuilt in this kernel.

    ``remote_type`` is the remote type's name, ``remote_traceback`` its
    formatted traceback.
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class NotFoundError(NbmodalError):
    """Something the agent was asked for isn't there: a named Dict, Queue or Volume (the message lists
    those that do), a file in a volume, a run, session, container, image or blob.

    Not a ``KeyError``: a missing key of a ``Dict`` is a ``KeyError``, as for a dict, and a bug that
    raises ``KeyError`` must never read as "not found".
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ResourcesUnavailableError(NbmodalError):
    """A ``cpu=`` or ``memory=`` request the host can never meet."""


class GpuUnavailableError(ResourcesUnavailableError):
    """A ``gpu=`` request that no reachable host can ever meet."""


class RunLostError(NbmodalError):
    """The run's container died (or the run was lost with its agent)."""


class ImageDefinitionError(NbmodalError, ValueError):
    """An ``Image`` (or ``%%image`` cell) defined wrongly; raised before anything is built."""


class ImageBuildError(NbmodalError):
    """An image failed to build on its host (the message names the failing step and its output)."""


class SlurmJobError(NbmodalError):
    """Slurm refused a container's job, or the job can never start as asked (Slurm's own message)."""

"""Modal's names for features nbmodal has not built yet: they exist, and using them says so.

Modal code that merely *mentions* ``nbmodal.SandboxSnapshot`` or ``nbmodal.Proxy``
(in a type hint, an ``isinstance``, an import) works; calling one of them —
``SandboxSnapshot.from_id(...)``, ``Period(days=1)``,
``CloudBucketMount(...)`` — raises ``nbmodal.exception.NotAvailableError`` (an
``InvalidError``) that names the feature, instead of an ``AttributeError`` or a
silent change of meaning. The README's "Modal compatibility" table lists them.
"""

from __future__ import annotations

from typing import Any, NoReturn

from nbmodal.exceptions import not_available


class _UnavailableType(type):
    """Any public class attribute of an unavailable class is a callable that raises when called."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):  # pickling, copying and introspection look for dunders: plain AttributeError
            raise AttributeError(name)

        def unavailable(*args: Any, **kwargs: Any) -> NoReturn:
            raise not_available(f"{cls.__name__}.{name}", cls._why)

        unavailable.__name__ = name
        return unavailable


class _Unavailable(metaclass=_UnavailableType):
    _why = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise not_available(type(self).__name__, self._why)


class SandboxSnapshot(_Unavailable):
    """A Sandbox's filesystem snapshot; not available (containers are processes on the host, not images)."""

    _why = "build an nbmodal.Image with the same steps instead"


class Proxy(_Unavailable):
    """A static outbound IP for containers; not available: containers use their host's own network."""

    _why = "containers use their host's own network and addresses"


class CloudBucketMount(_Unavailable):
    """An S3/GCS bucket mounted in containers; not available yet."""

    _why = "mount the bucket on the host (s3fs, gcsfuse) and read it there, or use a Volume"


class NetworkFileSystem(_Unavailable):
    """Modal's superseded shared filesystem; use ``nbmodal.Volume``, which every container of a host shares."""

    _why = "use nbmodal.Volume: every container on a host shares its directory"


class Client(_Unavailable):
    """A client of Modal's servers; there are none here (nbmodal talks to its agents over SSH)."""

    _why = "nbmodal connects to its agents by itself (`nbmodal host add`)"



"""Modal's names for features nbmodal has not built yet: they exist, and using them says so.

Modal code that merely *mentions* ``nbmodal.Sandbox`` or ``nbmodal.Secret``
(in a type hint, an ``isinstance``, an import) works; calling one of them —
``Secret.from_name(...)``, ``Sandbox.create(...)``, ``@fastapi_endpoint()``,
``forward(8000)`` — raises ``nbmodal.exception.NotAvailableError`` (an
``InvalidError``) that names the feature, instead of an ``AttributeError`` or a
silent change of meaning. The README's "Modal compatibility" table lists them.
"""

from __future__ import annotations

from collections.abc import Callable
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


class Secret(_Unavailable):
    """Modal's secrets (``Secret.from_name``, ``from_dict``, ``from_dotenv``…); not available yet."""

    _why = "pass settings through the notebook's variables or the host's environment meanwhile"


class Sandbox(_Unavailable):
    """Modal's sandboxes (``Sandbox.create``, ``exec``…); not available yet."""

    _why = "run commands from a function (subprocess) meanwhile"


class SandboxSnapshot(_Unavailable):
    """A Sandbox's filesystem snapshot; not available yet (nor are Sandboxes)."""


class ContainerProcess(_Unavailable):
    """A process in a Sandbox (``Sandbox.exec``); not available yet."""


class FileIO(_Unavailable):
    """A file in a Sandbox's filesystem; not available yet."""


class StreamReader(_Unavailable):
    """A Sandbox process's output stream; not available yet."""


class StreamWriter(_Unavailable):
    """A Sandbox process's input stream; not available yet."""


class Cron(_Unavailable):
    """A cron schedule for ``schedule=``; schedules are not available yet."""

    _why = "nothing runs a function on a schedule here: call it from a loop, cron or a detached run"


class Period(_Unavailable):
    """A fixed-interval schedule for ``schedule=``; schedules are not available yet."""

    _why = Cron._why


class Tunnel(_Unavailable):
    """A port exposed from a container (``forward``); not available yet."""


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


def forward(port: int, *, unencrypted: bool = False, client: Any = None) -> NoReturn:
    """Expose a container's port publicly; not available yet."""
    raise not_available("forward()", "reach a host's ports through SSH port forwarding meanwhile")


def _web_decorator(name: str) -> Callable[..., NoReturn]:
    def decorator(*args: Any, **kwargs: Any) -> NoReturn:
        raise not_available(f"@{name} (web endpoints)", "serve from a %%remote cell or function on the host's port "
                            "and reach it over SSH meanwhile")

    decorator.__name__ = name
    decorator.__doc__ = f"Modal's ``@{name}``: web endpoints are not available on nbmodal yet."
    return decorator


asgi_app = _web_decorator("asgi_app")
wsgi_app = _web_decorator("wsgi_app")
web_server = _web_decorator("web_server")
fastapi_endpoint = _web_decorator("fastapi_endpoint")
web_endpoint = _web_decorator("web_endpoint")


def interact() -> NoReturn:
    """Modal's ``interact()`` (interactive debugging in a container); not available yet."""
    raise not_available("interact() (interactive debugging inside a running container)",
                        "the debugging feature will provide it; use print() or logging meanwhile")

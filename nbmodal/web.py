"""Web UIs from the hosts, in the notebook's own browser: ``forward`` and web endpoints, named as in Modal.

Inside a remote cell or function::

    with nbmodal.forward(6006) as tunnel:          # e.g. TensorBoard on port 6006
        print(tunnel.url)                          # opens in the browser the notebook is open in

and on functions (also on ``@app.cls`` methods)::

    @app.function()
    @nbmodal.fastapi_endpoint(method="GET")
    def square(x: int):
        return {"square": x * x}

    with app.run():                                # serves it while the block runs
        print(square.get_web_url())

A container's port is reached through the Jupyter server's proxy
(``<jupyter url>nbmodal/proxy/<host>/<name>/``, authenticated by Jupyter), from
the command line with ``nbmodal forward RUN_OR_CONTAINER PORT``, and, on the
local agent, directly at ``http://127.0.0.1:PORT/``. The serving itself
(uvicorn for ASGI and WSGI apps, FastAPI around a plain function) happens in
the container: ``nbmodal/_web_serving.py``; runs that serve an App's endpoints
are started by ``nbmodal/_web_endpoints.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from nbmodal.exceptions import InvalidError

log = logging.getLogger(__name__)

WEB_ATTRIBUTE = "_nbmodal_web"
_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclasses.dataclass(frozen=True)
class Tunnel:
    """A port of a container, reachable from the user's browser (what ``forward()`` yields).

    ``url`` is where the browser reaches it: the Jupyter server's proxy when one serves this notebook,
    else ``http://127.0.0.1:PORT/`` (right on the local agent's machine; for an SSH host use
    ``nbmodal forward RUN_ID PORT`` on your machine). On a JupyterHub (Binder) whose public address the
    server doesn't know, it is relative to the notebook page's origin (``/user/alice/nbmodal/proxy/...``),
    as links in the notebook resolve it. ``host``/``port`` are that URL's (``""``/``0`` for such a relative
    one), as Modal's TLS endpoint; ``unencrypted_host``/``unencrypted_port`` are the raw TCP port on the
    container's host (its loopback: containers share their host's network).

    Example::

        with nbmodal.forward(8000) as tunnel:
            print(tunnel.url)
    """

    host: str
    port: int
    unencrypted_host: str
    unencrypted_port: int
    url: str
    tunnel_id: str = ""
    run_id: str = ""
    container_id: str = ""
    unencrypted: bool = False

    @property
    def tls_socket(self) -> tuple[str, int]:
        """(host, port) of the URL the browser uses."""
        return (self.host, self.port)

    @property
    def tcp_socket(self) -> tuple[str, int]:
        """(host, port) of the raw TCP port on the container's host; needs ``forward(port, unencrypted=True)``."""
        if not self.unencrypted:
            raise InvalidError("this tunnel was not opened for plain TCP: use forward(port, unencrypted=True)")
        return (self.unencrypted_host, self.unencrypted_port)

    def _repr_html_(self) -> str:
        return link_html(self.url)

    def iframe(self, height: int = 480) -> Any:
        """An object that ``display()`` shows as the page inline (in a cell's output)."""
        return _IFrame(self.url, height)


@contextlib.contextmanager
def forward(port: int, *, unencrypted: bool = False, h2_enabled: bool = False, client: Any = None) -> Iterator[Tunnel]:
    """Make a port of this container reachable from the user's browser while the block runs.

    Works inside a remote cell or function (anywhere else there is no container to forward from).
    ``unencrypted=True`` also gives ``tunnel.tcp_socket``; ``h2_enabled`` and ``client`` change nothing here.

    Example::

        import subprocess
        subprocess.Popen(["python", "-m", "http.server", "8000"])
        with nbmodal.forward(8000) as tunnel:
            print(tunnel.url)
            time.sleep(600)
    """
    from nbmodal_wire import pb

    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidError(f"forward(port={port!r}): the port must be an int from 1 to 65535")
    info = open_tunnel(port, kind="forward")
    try:
        yield tunnel_of(info, unencrypted)
    finally:
        try:
            _container_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_CLOSE, tunnel_id=info.tunnel_id))
        except Exception as exc:  # the run is ending anyway: its tunnel ends with it
            log.info("closing tunnel %s: %s", info.tunnel_id, exc)


def open_tunnel(port: int, *, kind: str, name: str = "", label: str = ""):
    """Tell this container's agent that ``port`` is served (``pb.TunnelInfo``); only inside a container."""
    from nbmodal._runtime.connection import in_container
    from nbmodal_wire import pb

    if not in_container():
        raise InvalidError("forward() works inside a container: call it in a %%remote cell or a function run "
                           "with .remote() (here, the port is already on this machine)")
    if os.environ.get("SLURM_JOB_ID"):  # the job's node is not the login node, where the agent (and SSH) is
        from nbmodal.exceptions import not_available

        raise not_available("forward() and web endpoints in Slurm jobs",
                            "serve from a host without --slurm, or use the cluster's own port forwarding")
    info = _container_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=port, kind=kind, name=name,
                                                            label=label)).tunnel
    if not info.url:
        if info.host and info.host != "local":
            log.warning("port %d is served on host %s; no Jupyter server was found to proxy it, so reach it "
                        "from your machine with: nbmodal forward %s %d --host %s", port, info.host, info.run_id,
                        port, info.host)
        info.url = f"http://127.0.0.1:{port}/"
    return info


def tunnel_of(info, unencrypted: bool = False) -> Tunnel:
    """The ``Tunnel`` of a ``pb.TunnelInfo``."""
    parts = urlsplit(info.url)
    if not parts.scheme:  # relative to the notebook page's origin (a JupyterHub whose public address is unknown)
        host, port = "", 0
    else:
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    return Tunnel(host=host, port=port,
                  unencrypted_host="127.0.0.1", unencrypted_port=info.port, url=info.url, tunnel_id=info.tunnel_id,
                  run_id=info.run_id, container_id=info.container_id, unencrypted=unencrypted)


def _container_client():
    from nbmodal._runtime.connection import container_connection

    return container_connection().client()


# -- web endpoint decorators ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """What a web decorator asked for; kept on the function as ``_nbmodal_web``."""

    kind: str  # web_server | asgi_app | wsgi_app | fastapi_endpoint
    port: int = 0
    startup_timeout: float = 5.0
    method: str = "GET"
    docs: bool = False
    label: str | None = None


def _mark(config: WebConfig) -> Callable[[Callable], Callable]:
    def mark(fn: Callable) -> Callable:
        if not callable(fn):
            raise InvalidError(f"@{config.kind} decorates a function or method, not {fn!r}")
        if hasattr(fn, "raw_f"):  # an nbmodal Function: the decorators are in the wrong order
            raise InvalidError(f"@nbmodal.{config.kind} goes below @app.function (it decorates the plain function)")
        setattr(fn, WEB_ATTRIBUTE, config)
        return fn

    return mark


def _check_label(label: str | None) -> None:
    if label is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", label):
        raise InvalidError(f"label={label!r}: use 1-63 lower-case letters, digits and '-' (it is part of the URL)")


def web_server(port: int, *, startup_timeout: float = 5.0, label: str | None = None,
               custom_domains: Any = None, requires_proxy_auth: bool = False) -> Callable[[Callable], Callable]:
    """Serve what the function starts on ``port`` (any web server: TensorBoard, Gradio, a subprocess).

    The function starts the server and returns; if nothing listens on ``port`` within
    ``startup_timeout`` seconds the run fails saying so. ``custom_domains`` and
    ``requires_proxy_auth`` change nothing here (the Jupyter proxy always asks for Jupyter's auth).

    Example::

        @app.function()
        @nbmodal.web_server(6006, startup_timeout=30)
        def tensorboard():
            subprocess.Popen(["tensorboard", "--logdir", "/runs", "--port", "6006"])
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidError(f"@web_server(port={port!r}): the port must be an int from 1 to 65535")
    if not startup_timeout or startup_timeout <= 0:
        raise InvalidError("@web_server(startup_timeout=...) must be more than 0 seconds")
    _check_label(label)
    return _mark(WebConfig("web_server", port=port, startup_timeout=float(startup_timeout), label=label))


def asgi_app(_warn_parentheses_missing: Any = None, *, label: str | None = None, custom_domains: Any = None,
             requires_proxy_auth: bool = False) -> Callable[[Callable], Callable]:
    """Serve the ASGI app (FastAPI, Starlette…) the function returns, with uvicorn in the container.

    Example::

        @app.function()
        @nbmodal.asgi_app()
        def web():
            api = FastAPI()
            api.get("/")(lambda: {"ok": True})
            return api
    """
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @nbmodal.asgi_app() with parentheses")
    _check_label(label)
    return _mark(WebConfig("asgi_app", label=label))


def wsgi_app(_warn_parentheses_missing: Any = None, *, label: str | None = None, custom_domains: Any = None,
             requires_proxy_auth: bool = False) -> Callable[[Callable], Callable]:
    """Serve the WSGI app (Flask, Django…) the function returns (uvicorn, through a2wsgi's adapter).

    Example::

        @app.function()
        @nbmodal.wsgi_app()
        def web():
            return flask_app
    """
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @nbmodal.wsgi_app() with parentheses")
    _check_label(label)
    return _mark(WebConfig("wsgi_app", label=label))


def fastapi_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET", label: str | None = None,
                     custom_domains: Any = None, docs: bool = False,
                     requires_proxy_auth: bool = False) -> Callable[[Callable], Callable]:
    """Serve the function itself at the URL's root, as a FastAPI route taking ``method``.

    Its parameters are the query (or, for a pydantic model or dict, the JSON body), as FastAPI reads
    them; ``docs=True`` adds ``/docs``.

    Example::

        @app.function()
        @nbmodal.fastapi_endpoint(method="GET")
        def square(x: int):
            return {"square": x * x}
    """
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @nbmodal.fastapi_endpoint() with parentheses")
    if not isinstance(method, str) or method.upper() not in _HTTP_METHODS:
        raise InvalidError(f"fastapi_endpoint(method={method!r}): one of {', '.join(_HTTP_METHODS)}")
    _check_label(label)
    return _mark(WebConfig("fastapi_endpoint", method=method.upper(), docs=bool(docs), label=label))


def web_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET", label: str | None = None,
                 custom_domains: Any = None, docs: bool = False,
                 requires_proxy_auth: bool = False) -> Callable[[Callable], Callable]:
    """Modal's older name of ``fastapi_endpoint`` (deprecated there), the same here.

    Example::

        @app.function()
        @nbmodal.web_endpoint()
        def hello():
            return "hi"
    """
    return fastapi_endpoint(_warn_parentheses_missing, method=method, label=label, docs=docs)


def web_config(fn: Any) -> WebConfig | None:
    """The web decorator's config of a function (or of the method an ``@app.cls`` method's call runs)."""
    config = getattr(fn, WEB_ATTRIBUTE, None)
    if config is None:
        from remote_agent.worker.classes import target_method

        method = target_method(fn)
        config = getattr(method, WEB_ATTRIBUTE, None) if method is not None else None
    return config if isinstance(config, WebConfig) else None


def local_url(function: Any) -> str:
    """A served web endpoint's URL for code in this process (no Jupyter auth needed): on the local agent
    the container's own port, for an SSH host a local port forwarded over the host's SSH transport.

    Example::

        with app.run():
            print(urllib.request.urlopen(nbmodal.web.local_url(square) + "?x=3").read())
    """
    from nbmodal._web_endpoints import local_url as endpoint_local_url

    return endpoint_local_url(function)


# -- showing links in a notebook ----------------------------------------------------


def link_html(url: str) -> str:
    from html import escape

    return f'<a href="{escape(url)}" target="_blank" rel="noopener">{escape(url)}</a>'


class _IFrame:
    def __init__(self, url: str, height: int) -> None:
        self.url, self.height = url, height

    def _repr_html_(self) -> str:
        from html import escape

        return (f'<iframe src="{escape(self.url)}" width="100%" height="{int(self.height)}" '
                f'style="border: 1px solid #ccc"></iframe>')


def show(target: Any, *, iframe: bool = False, height: int = 480) -> None:
    """Show a web endpoint (a Function, a Tunnel or a URL) in the cell: a link, and the page inline with
    ``iframe=True``.

    Example::

        nbmodal.web.show(square, iframe=True)
    """
    from IPython.display import HTML, display

    url = target if isinstance(target, str) else getattr(target, "url", None) or target.get_web_url()
    if not url:
        raise InvalidError(f"{target!r} has no web URL: it is not a web endpoint")
    display(HTML(link_html(url)))
    if iframe:
        display(HTML(_IFrame(url, height)._repr_html_()))

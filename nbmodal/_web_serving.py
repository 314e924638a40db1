"""A web endpoint's run, inside its container: start the server, wait for its port, say so, serve.

``serve_endpoint`` is what a web function's run calls (``_web_endpoints.py``
sends it with the user's function): ``@web_server`` functions start their own
server on their port; ASGI apps (``@asgi_app``, FastAPI around a
``@fastapi_endpoint`` function) and WSGI apps (``@wsgi_app``, through a2wsgi's
adapter) are served by uvicorn on a free loopback port, on a thread of their
own. Once the port answers, the container opens its tunnel with the agent
(``TUNNEL_OPEN``) under the endpoint's name, and the run waits until it is
cancelled (``with app.run():`` ending, Stop, ``nbmodal stop``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

log = logging.getLogger("nbmodal.web")

_POLL_S = 0.05


def serve_endpoint(fn: Any, name: str, label: str) -> None:
    """Serve ``fn``'s endpoint (its ``WebConfig`` says how) as ``name`` until the run is cancelled."""
    from nbmodal.web import open_tunnel, web_config

    config = web_config(fn)
    if config is None:
        raise TypeError(f"{label} is not a web endpoint (no @web_server, @asgi_app, @wsgi_app or @fastapi_endpoint)")
    target = _bound(fn)
    server = thread = None
    if config.kind == "web_server":
        target()
        port = config.port
        wait_for_port(port, config.startup_timeout, f"@web_server({port}) {label}")
    else:
        app = _asgi_app(config, target, label)
        server, thread, port = _start_uvicorn(app, label)
    info = open_tunnel(port, kind=config.kind, name=name, label=label)
    print(f"{label}: serving at {info.url}", flush=True)
    try:
        while thread is None or thread.is_alive():  # until cancelled (KeyboardInterrupt), or uvicorn stops
            time.sleep(1.0)
        raise RuntimeError(f"{label}: its uvicorn server stopped")
    finally:
        if server is not None:
            server.should_exit = True


def wait_for_port(port: int, timeout: float, what: str) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``; else fail the run saying so."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: nothing listened on port {port} within startup_timeout={timeout:g} s; "
                                   f"start the server on 127.0.0.1 or 0.0.0.0 port {port} (and return, leaving it "
                                   f"running), or raise startup_timeout") from None
            time.sleep(_POLL_S)


def _bound(fn: Any) -> Any:
    """The callable to serve: an ``@app.cls`` method bound to its container's instance (``@enter`` run)."""
    import functools

    from remote_agent.worker import classes

    if isinstance(fn, functools.partial) and fn.func is classes.call_method:
        cls, parameters, method, key = fn.args[:4]
        return getattr(classes._instance(cls, parameters, key), method)
    return fn


def _asgi_app(config, target: Any, label: str) -> Any:
    if config.kind == "asgi_app":
        return target()
    if config.kind == "wsgi_app":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(target())
    from fastapi import FastAPI

    if config.docs:
        api = FastAPI(title=label)
    else:
        api = FastAPI(title=label, docs_url=None, redoc_url=None, openapi_url=None)
    api.add_api_route("/", target, methods=[config.method])
    return api


def _start_uvicorn(app: Any, label: str) -> tuple[Any, threading.Thread, int]:
    """uvicorn serving ``app`` on a free loopback port, on a thread of its own: (server, thread, port)."""
    import uvicorn

    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it every
    # keep-alive answer waits out the client's delayed ACK (40 ms) between its headers and its body.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # proxy_headers off: the Jupyter proxy's X-Forwarded-* must not rewrite the app's own URLs.
    config = uvicorn.Config(app, log_level="warning", proxy_headers=False, lifespan="auto", ws="auto")
    server = uvicorn.Server(config)
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[listener])
        except BaseException as exc:  # reported by the run, below
            failed.append(exc)

    thread = threading.Thread(target=serve, name=f"uvicorn-{label}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if failed or time.monotonic() > deadline:
            raise RuntimeError(f"{label}: uvicorn did not start: {failed[0] if failed else 'no answer in 60 s'}")
        time.sleep(_POLL_S)
    return server, thread, port

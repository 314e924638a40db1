"""An App's web endpoints, served while the App runs: one detached run per endpoint container.

``with app.run():`` starts, for each function (and ``@app.cls`` method) marked
with a web decorator, ``max(1, min_containers)`` runs of ``serve_endpoint``
(``_web_serving.py``), waits until each has opened its tunnel (or failed: a
port nothing listens on within ``startup_timeout`` fails the block with that
message), shows the links, and cancels the runs when the block ends. Their
containers follow the function's options (image, gpu, volumes, scaledown
window). The URL of an endpoint is fixed by its name, so ``get_web_url()``
answers before, during and after.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nbmodal._runtime.web_access import web_access
from nbmodal.exceptions import InvalidError
from nbmodal.hosts import LOCAL, load_hosts
from nbmodal.web import link_html, web_config
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal.app import App, Function

log = logging.getLogger(__name__)

# How long the first serving run of an endpoint may take to open its tunnel (image builds, imports).
START_TIMEOUT_S = 120.0


def endpoint_name(function: Function) -> str:
    """The endpoint's name in its URL: its ``label=``, else ``<app>-<function>`` (as Modal's URL labels)."""
    config = web_config(function.raw_f)
    if config is not None and config.label:
        return config.label
    app_name = function.app.name if function.app is not None and function.app.name else ""
    raw = f"{app_name}-{short_name(function)}" if app_name else short_name(function)
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:63] or "endpoint"


def short_name(function: Function) -> str:
    """Its name without the scopes it was defined in (``f`` for ``test.<locals>.f``; ``Model.predict`` stays)."""
    return re.sub(r"^.*<locals>\.", "", function.name)


def web_url(function: Function) -> str | None:
    """Where the user's browser reaches ``function``'s endpoint (None for a function that is not one)."""
    if web_config(function.raw_f) is None:
        return None
    host = function.host or _default_host()
    access = web_access(host)
    if access.proxy_base:
        return f"{access.proxy_base}{endpoint_name(function)}/"
    if host != LOCAL:
        return None  # no Jupyter server: `nbmodal forward` reaches it from this machine
    # The local agent without Jupyter: the serving container's port, on this machine.
    from nbmodal._runtime.connection import existing_client

    client = existing_client()
    name = endpoint_name(function)
    tunnels = client.tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels if client is not None else []
    port = next((t.port for t in tunnels if t.live and t.name == name), 0)
    return f"http://127.0.0.1:{port}/" if port else None


def web_endpoint_spec(function: Function) -> pb.WebEndpointSpec | None:
    """What a deploy tells the agent about a web endpoint (None for other functions): it keeps it served."""
    config = web_config(function.raw_f)
    return pb.WebEndpointSpec(name=endpoint_name(function), kind=config.kind) if config is not None else None


def local_url(function: Function) -> str:
    """``function``'s endpoint as this process reaches it without Jupyter's auth: the container's port on the
    local agent, else a port here forwarded over its host's SSH transport."""
    from nbmodal._runtime import port_forward
    from nbmodal._runtime.connection import connection

    if web_config(function.raw_f) is None:
        raise InvalidError(f"{function.name} is not a web endpoint")
    host = function.host or _default_host()
    name = endpoint_name(function)
    tunnels = connection(host).client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
    port = next((t.port for t in tunnels if t.live and t.name == name), 0)
    if not port:
        raise InvalidError(f"{function.name} is not being served on {host}: serve it with `with app.run():`")
    return f"http://127.0.0.1:{port_forward.local_port(host, port)}/"


def web_functions(app: App) -> list[Function]:
    """The App's web endpoints: its functions, and the methods of its classes (default parameters)."""
    found = [f for f in app.registered_functions.values() if web_config(f.raw_f) is not None]
    for cls in app.registered_classes.values():
        if not any(web_config(getattr(cls.user_cls, name, None)) for name in cls.methods):
            continue
        instance = cls()
        found.extend(getattr(instance, name) for name in cls.methods
                     if web_config(getattr(cls.user_cls, name, None)) is not None)
    return found


@dataclasses.dataclass
class _Serving:
    function: Any
    target: Any
    run_id: str


@contextmanager
def serve_endpoints(app: App, keep: bool = False) -> Iterator[list[pb.TunnelInfo]]:
    """Serve the App's web endpoints while the block runs; yields their tunnels. ``keep``
    (``app.run(detach=True)``): they go on serving after the block (``nbmodal stop RUN_ID`` ends one)."""
    functions = web_functions(app)
    serving: list[_Serving] = []
    try:
        for function in functions:
            for _ in range(max(1, function.spec.min_containers)):
                serving.append(_start(function))
        tunnels = [_wait_until_served(s) for s in serving]
    except BaseException:
        _stop(serving)  # one failed to start: none is left serving
        raise
    _show(tunnels)
    try:
        yield tunnels
    finally:
        if not keep:
            _stop(serving)


def _stop(serving: list[_Serving]) -> None:
    for s in serving:
        try:
            s.target.current().client.cancel(s.run_id, force=True)
        except Exception as exc:  # the host may be gone; its runs end with their containers
            log.info("stopping endpoint run %s: %s", s.run_id, exc)


def _start(function: Function) -> _Serving:
    from nbmodal._runtime.invocation import call_request, submit
    from nbmodal._web_serving import serve_endpoint

    target = function.resolve()
    options = dataclasses.replace(function.run_options(detach=True), timeout_s=0.0)  # serves until stopped
    call: tuple[Any, tuple, dict] = (serve_endpoint, (function.raw_f, endpoint_name(function), function.name), {})
    request = call_request(target, function.name, call, options)
    info = submit(target, request)
    return _Serving(function, target, info.run_id)


def _wait_until_served(s: _Serving) -> pb.TunnelInfo:
    """The serving run's tunnel once it is open; the run's own error if it failed first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    client = s.target.current().client
    while time.monotonic() < deadline:
        for info in client.tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels:
            if info.run_id == s.run_id and info.live:
                return info
        run = client.get_run(s.run_id)
        if run.state not in (pb.PENDING, pb.RUNNING):
            raise InvalidError(f"web endpoint {s.function.name} failed to start (run {s.run_id}, "
                               f"{pb.RunState.Name(run.state)}): {_run_error(client, s.run_id) or run.error}")
        time.sleep(0.1)
    raise TimeoutError(f"web endpoint {s.function.name} did not start serving within {START_TIMEOUT_S:g} s "
                       f"(run {s.run_id}; `nbmodal logs {s.run_id}` shows its output)")


def _run_error(client: Any, run_id: str) -> str:
    """The failed run's error message, from its RunFinished event."""
    from nbmodal._runtime.client import iterate_events

    for event in iterate_events(client.attach(run_id, follow=False, timeout=30), client):
        if event.WhichOneof("kind") == "finished" and event.finished.error.message:
            return event.finished.error.message
    return ""


def _show(tunnels: list[pb.TunnelInfo]) -> None:
    """The links, in the cell (HTML) or on the terminal (logging)."""
    if not tunnels:
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import HTML, display

        rows = "".join(f"<li>{t.label}: {link_html(t.url) if t.url else _port_note(t)}</li>" for t in tunnels)
        display(HTML(f"<ul>{rows}</ul>"))
        return
    for t in tunnels:
        log.warning("%s: %s", t.label, t.url or _port_note(t))


def _port_note(t: pb.TunnelInfo) -> str:
    if t.host == "local" or not t.host:
        return f"http://127.0.0.1:{t.port}/"
    return f"`nbmodal forward {t.run_id} {t.port} --host {t.host}` (no Jupyter server proxies it)"


def _default_host() -> str:
    hosts = list(load_hosts())
    return hosts[0] if hosts else LOCAL

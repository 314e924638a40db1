"""``<base_url>nbmodal/proxy/<host>/<name>/...``: ports served from containers, through the Jupyter server.

So a web UI in a container (TensorBoard, Gradio, a FastAPI endpoint) opens in
the browser the notebook is open in, behind whatever proxies JupyterLab works
behind (JupyterHub, Binder), with Jupyter's own authentication.

``<name>`` is a tunnel's name (``nbmodal.forward``: its id; a web endpoint: its
label) or a port some live tunnel of that host serves. The agent's tunnel list
(``TunnelCall``) says which container port it is; on the local agent's machine
that port is here, for an SSH host a local port forwarded over the host's SSH
transport (``_runtime/port_forward.py``).

WebSockets (routed by their ``Upgrade`` header) go to ``EndpointSocketHandler``,
built on jupyter-server-proxy's ``ProxyHandler``: its authentication (no
Jupyter user: 403) and its WebSocket relay (with pings and subprotocols).
Every other request goes to ``EndpointProxyHandler``, a plain ``JupyterHandler``
with the same authentication (no user: the login page, or 403) and Jupyter's
XSRF check, relaying over ``backend_http.py``'s kept-alive connections: every
answer streams through as it comes (jupyter-server-proxy streams only requests
that ``Accept: text/event-stream`` and then drops ``Content-Encoding``), and a
URL whose container has ended gets a 502 page that names the run. Why not
``ProxyHandler`` for plain HTTP too, and why not aiohttp: what each costs per
request (bench/bench_web.py, bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from jupyter_server.base.handlers import JupyterHandler, utcnow
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import httputil, web
from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.routing import PathMatches, Rule

from nbmodal._runtime import port_forward
from nbmodal._runtime.connection import connection, existing_client
from nbmodal.hosts import LOCAL
from nbmodal.server.backend_http import Answer, BackendPool
from nbmodal_wire import pb

log = logging.getLogger(__name__)

# How long a host's tunnel list is reused (each proxied request would otherwise ask its agent).
LIST_TTL_S = 1.0
# Request headers that belong to one hop, not to the backend (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Proxy-Connection"))
# Request headers not relayed as they came: hop-by-hop ones, and those the relay sets itself (a body's
# length: tornado has read the body whole; Expect: the body is here already).
NOT_RELAYED = HOP_BY_HOP | {"host", "content-length", "expect", "x-forwarded-prefix", "x-forwarded-context",
                            "x-forwarded-proto", "x-forwarded-host"}
# What a proxied path keeps unquoted: RFC 3986's reserved and unreserved characters.
_SAFE = ":/?#[]@!$&'()*+,;=-._~"


class EndpointGone(Exception):
    """The name was served by a tunnel that has ended."""

    def __init__(self, tunnel: pb.TunnelInfo) -> None:
        super().__init__(tunnel.ended)
        self.tunnel = tunnel


class EndpointUnknown(Exception):
    """No tunnel of that host has that name or port."""


@dataclass(frozen=True)
class Target:
    port: int  # on 127.0.0.1 here
    tunnel: pb.TunnelInfo


class Resolver:
    """Which local port serves ``<host>/<name>``; one per Jupyter server, shared by its handlers."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[float, list[pb.TunnelInfo]]] = {}
        self._turn = 0
        self._lock = threading.Lock()

    def cached(self, host: str, name: str) -> Target | None:
        """The target from a fresh enough tunnel list, without asking the agent (None: ask it)."""
        cached = self._lists.get(host)
        if cached is None or time.monotonic() - cached[0] >= LIST_TTL_S:
            return None
        live = [t for t in cached[1] if t.live and (t.name == name or (name.isdigit() and t.port == int(name)))]
        if not live or (host != LOCAL and not port_forward.forwarding(host, live[0].port)):
            return None
        with self._lock:
            self._turn += 1
            tunnel = live[self._turn % len(live)]
        return Target(port_forward.local_port(host, tunnel.port), tunnel)

    def resolve(self, host: str, name: str, fresh: bool = False) -> Target:
        tunnels = self._tunnels(host, fresh)
        matching = [t for t in tunnels if t.name == name or (name.isdigit() and t.port == int(name))]
        live = [t for t in matching if t.live]
        if live:
            with self._lock:
                self._turn += 1
                tunnel = live[self._turn % len(live)]  # an endpoint with several containers: each in turn
            return Target(port_forward.local_port(host, tunnel.port), tunnel)
        if matching:
            raise EndpointGone(matching[0])
        if not fresh:
            return self.resolve(host, name, fresh=True)  # opened since the list was read
        names = sorted({t.name for t in tunnels if t.live})
        raise EndpointUnknown(f"nothing named {name!r} is served on host {host!r}"
                              f" (served there now: {', '.join(names) or 'nothing'})")

    def forget(self, host: str) -> None:
        self._lists.pop(host, None)

    def _tunnels(self, host: str, fresh: bool) -> list[pb.TunnelInfo]:
        cached = self._lists.get(host)
        if cached is not None and not fresh and time.monotonic() - cached[0] < LIST_TTL_S:
            return cached[1]
        if host == LOCAL:
            client = existing_client()
            if client is None:
                raise EndpointUnknown("the local agent is not running, so nothing is served on it")
        else:
            client = connection(host).client()  # an unknown host: HostError, said on the page
        tunnels = list(client.tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels)
        self._lists[host] = (time.monotonic(), tunnels)
        return tunnels


class _Endpoint:
    """What the HTTP and the WebSocket handler share: the resolver, and where a name's requests go."""

    resolver: Resolver
    base_url: str
    _context: str = ""

    def initialize(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def _context_path(self, host: str, name: str) -> str:
        return url_path_join(self.base_url, "nbmodal", "proxy", host, name)

    async def _resolve(self, host: str, name: str, fresh: bool = False) -> Target:
        target = None if fresh else self.resolver.cached(host, name)  # most requests: no thread, no agent call
        if target is not None:
            return target
        return await IOLoop.current().run_in_executor(None, self.resolver.resolve, host, name, fresh)


class EndpointSocketHandler(_Endpoint, ProxyHandler):
    """A WebSocket to ``<host>/<name><path>``: jupyter-server-proxy's relay (pings, subprotocols), its auth
    (no Jupyter user: 403). Routed here only for an ``Upgrade: websocket`` request (``setup_proxy``)."""

    async def open(self, host: str, name: str, path: str | None = None) -> None:
        try:
            target = await self._resolve(host, name)
        except Exception as exc:
            self.close(code=1011, reason=_short(f"nbmodal: {exc}"))
            return
        self._context = self._context_path(host, name)
        await self.proxy_open("127.0.0.1", target.port, path or "/")

    def _get_context_path(self, host, port) -> str:  # jupyter-server-proxy's hook: X-Forwarded-Prefix
        return self._context


class EndpointProxyHandler(_Endpoint, JupyterHandler):
    """One proxied HTTP request to ``<host>/<name><path>``, of any method, its answer streamed through.

    A plain ``JupyterHandler``, not jupyter-server-proxy's ``ProxyHandler``: that one is also a tornado
    ``WebSocketHandler`` and pays for it on every plain request (two constructors, per-request method
    wrappers). Authentication is the same as ``ProxyHandler.prepare``'s: Jupyter's user, then
    ``web.authenticated`` (no user: a redirect to the login page for GET/HEAD, else 403), and Jupyter's
    XSRF check for requests that change something (``JupyterHandler.prepare``).
    """

    async def prepare(self) -> None:  # type: ignore[override]
        prepared = super().prepare()
        if prepared is not None:
            await prepared
        web.authenticated(lambda handler: None)(self)  # even where Jupyter allows unauthenticated access
        if self._finished:  # sent to the login page
            return
        # Proxied traffic is activity: Jupyter's idle culling (JupyterHub, Binder) must not stop a server in use.
        self.settings.setdefault("last_activity_times", {})["nbmodal-proxy"] = utcnow()

    def compute_etag(self) -> str | None:
        return None  # the backend's answer as it is: no ETag (and no 304) of the proxy's making

    async def get(self, host: str, name: str, path: str | None = None) -> None:
        if path is None:  # relative links of the app need the trailing slash
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(self._context_path(host, name) + "/" + query)
            return
        await self._relay(host, name, path)

    async def post(self, host: str, name: str, path: str | None = None) -> None:
        await self._relay(host, name, path or "/")

    put = patch = delete = options = head = post

    async def _relay(self, host: str, name: str, path: str) -> None:
        try:
            target = await self._resolve(host, name)
        except EndpointGone as gone:
            self._page(502, "This endpoint has ended", _gone_text(host, name, gone.tunnel))
            return
        except EndpointUnknown as exc:
            self._page(404, "Nothing is served here", str(exc))
            return
        except Exception as exc:  # an unreachable host, a lost agent
            self._page(502, f"Host {host} is unreachable", f"{type(exc).__name__}: {exc}")
            return
        self._context = self._context_path(host, name)
        started = await self._stream(target, path)
        if started:
            return
        # Nothing answered: the container may have just ended (its run is named), or not serve yet.
        self.resolver.forget(host)
        try:
            await self._resolve(host, name, fresh=True)
        except EndpointGone as gone:
            self._page(502, "This endpoint has ended", _gone_text(host, name, gone.tunnel))
            return
        except Exception as exc:
            self._page(502, "This endpoint is unreachable", str(exc))
            return
        tunnel = target.tunnel
        self._page(502, "Nothing answers on this port",
                   f"port {tunnel.port} of container {tunnel.container_id} (run {tunnel.run_id}, "
                   f"{tunnel.label or tunnel.run_label}) on host {host} accepts no connections (yet).")

    async def _stream(self, target: Target, path: str) -> bool:
        """Relay the request to 127.0.0.1:port, streaming the answer; False if no answer started."""
        request = self.request
        headers = [(key, value) for key, value in request.headers.get_all() if key.lower() not in NOT_RELAYED]
        headers += [("Host", f"127.0.0.1:{target.port}"), ("X-Forwarded-Prefix", self._context),
                    ("X-Forwarded-Context", self._context), ("X-Forwarded-Proto", request.protocol),
                    ("X-Forwarded-Host", request.host)]
        body = request.body if request.body or request.method in ("POST", "PUT", "PATCH") else None
        # Spaces, non-ASCII and such quoted, RFC 3986's reserved and unreserved characters kept (as
        # jupyter-server-proxy does): just enough for a valid request line.
        where = quote(path if path.startswith("/") else "/" + path, safe=_SAFE)
        if request.query:
            where += "?" + request.query
        try:
            answer = await _pool().request(request.method or "GET", target.port, where, headers, body)
        except OSError as exc:  # refused, reset, closed before answering
            log.info("proxy to 127.0.0.1:%d: %s", target.port, exc)
            return False
        self._send_headers(answer)
        try:
            async with contextlib.aclosing(answer.pieces()) as pieces:
                async for data, last in pieces:
                    self.write(data)
                    if not last:
                        # More may come: this piece goes out now (server-sent events, streamed answers), and
                        # waiting for it to be sent is the back-pressure. An answer whose end is known (most)
                        # is sent by finish() in one write.
                        await self.flush()
        except StreamClosedError:  # the browser went away (a closed event-stream page)
            return True
        except OSError as exc:  # the server cut the answer off: so is the browser's (no clean end it would trust)
            log.info("proxy to 127.0.0.1:%d: answer cut off: %s", target.port, exc)
            if isinstance(self.request.connection, HTTP1Connection):
                self.request.connection.stream.close()  # then finish() sends nothing more, quietly
        self.finish()
        return True

    def _send_headers(self, answer: Answer) -> None:
        self._headers = httputil.HTTPHeaders()  # the backend's headers, not Jupyter's defaults
        self.set_status(answer.status, answer.reason or None)
        for key, value in answer.headers:
            lower = key.lower()
            if lower in HOP_BY_HOP or (lower == "content-length" and answer.framing in ("chunked", "close")):
                continue  # (a length beside chunked framing is wrong, and tornado frames what it sends itself)
            if lower == "location" and value.startswith("/") and not value.startswith("//"):
                value = self._context + value  # a redirect to an absolute path of the app stays under the prefix
            self._headers.add(key, value)

    def _page(self, status: int, title: str, detail: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(f"<!doctype html><html><head><title>nbmodal: {html.escape(title)}</title></head><body>"
                    f"<h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>"
                    f"<p><small>nbmodal's proxy at {html.escape(self.request.path)}</small></p></body></html>")


_pools: dict[int, BackendPool] = {}


def _pool() -> BackendPool:
    """The event loop's pool of kept-alive connections to the containers' servers (tornado's own client
    opens one per request)."""
    loop = id(asyncio.get_running_loop())
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = BackendPool()
    return pool


def _gone_text(host: str, name: str, tunnel: pb.TunnelInfo) -> str:
    return (f"{name} on host {host} was served by run {tunnel.run_id} ({tunnel.label or tunnel.run_label}) in "
            f"container {tunnel.container_id}, port {tunnel.port}; {tunnel.ended}. Start it again (its cell, "
            f"or `with app.run():`) for a new URL.")


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."  # a close reason is at most 123 bytes


def setup_proxy(web_app) -> None:
    """Route ``<base_url>nbmodal/proxy/<host>/<name>[/<path>]``: WebSocket upgrades to
    ``EndpointSocketHandler``, every other request to ``EndpointProxyHandler``."""
    pattern = url_path_join(web_app.settings["base_url"], "nbmodal", "proxy") + r"/([^/]+)/([^/]+)(/.*)?"
    resolver = Resolver()
    web_app.add_handlers(".*$", [Rule(_WebSocketUpgrade(pattern), EndpointSocketHandler, {"resolver": resolver}),
                                 (pattern, EndpointProxyHandler, {"resolver": resolver})])


class _WebSocketUpgrade(PathMatches):
    """The path pattern, for WebSocket upgrade requests (a GET with ``Upgrade: websocket``) only."""

    def match(self, request: httputil.HTTPServerRequest) -> dict | None:
        if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)

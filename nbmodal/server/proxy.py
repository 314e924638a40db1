"""``<base_url>nbmodal/proxy/<host>/<name>/...``: ports served from containers, through the Jupyter server.

So a web UI in a container (TensorBoard, Gradio, a FastAPI endpoint) opens in
the browser the notebook is open in, behind whatever proxies JupyterLab works
behind (JupyterHub, Binder), with Jupyter's own authentication.

``<name>`` is a tunnel's name (``nbmodal.forward``: its id; a web endpoint: its
label) or a port some live tunnel of that host serves. The agent's tunnel list
(``TunnelCall``) says which container port it is; on the local agent's machine
that port is here, for an SSH host a local port forwarded over the host's SSH
transport (``_runtime/port_forward.py``).

Built on jupyter-server-proxy's ``ProxyHandler``: its authentication (a
request without Jupyter's auth is refused: a redirect to the login page, 403
for WebSockets) and its WebSocket relay (with pings and subprotocols). The
HTTP relay is ours (``_relay``): every response streams through as it comes
(jupyter-server-proxy streams only requests that ``Accept: text/event-stream``
and then drops ``Content-Encoding``), and a URL whose container has ended gets
a 502 page that names the run.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
from dataclasses import dataclass

import aiohttp
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import ProxyHandler
from multidict import CIMultiDict
from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from nbmodal._runtime import port_forward
from nbmodal._runtime.connection import connection, existing_client
from nbmodal.hosts import LOCAL
from nbmodal_wire import pb

log = logging.getLogger(__name__)

# How long a host's tunnel list is reused (each proxied request would otherwise ask its agent).
LIST_TTL_S = 1.0
# Request headers that belong to one hop, not to the backend (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Proxy-Connection"))


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


class EndpointProxyHandler(ProxyHandler):
    """One proxied request (HTTP or WebSocket) to ``<host>/<name><path>``."""

    def initialize(self, resolver: Resolver) -> None:
        self.resolver = resolver

    # -- WebSockets: jupyter-server-proxy's relay to the resolved port ----------------

    async def open(self, host: str, name: str, path: str | None = None) -> None:
        try:
            target = await self._resolve(host, name)
        except Exception as exc:
            self.close(code=1011, reason=_short(f"nbmodal: {exc}"))
            return
        self._context = self._context_path(host, name)
        await self.proxy_open("127.0.0.1", target.port, path or "/")

    # -- HTTP: every method streams through ----------------------------------------

    async def http_get(self, host: str, name: str, path: str | None = None) -> None:
        if path is None:  # relative links of the app need the trailing slash
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(url_path_join(self.base_url, "nbmodal", "proxy", host, name) + "/" + query)
            return
        await self._relay(host, name, path)

    async def post(self, host: str, name: str, path: str | None = None) -> None:
        await self._relay(host, name, path or "/")

    put = patch = delete = options = post

    async def head(self, host: str, name: str, path: str | None = None) -> None:
        await self._relay(host, name, path or "/")

    def _context_path(self, host: str, name: str) -> str:
        return url_path_join(self.base_url, "nbmodal", "proxy", host, name)

    def _get_context_path(self, host, port) -> str:  # jupyter-server-proxy's hook: X-Forwarded-Prefix
        return getattr(self, "_context", "")

    async def _resolve(self, host: str, name: str, fresh: bool = False) -> Target:
        target = None if fresh else self.resolver.cached(host, name)  # most requests: no thread, no agent call
        if target is not None:
            return target
        return await IOLoop.current().run_in_executor(None, self.resolver.resolve, host, name, fresh)

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
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in self.request.headers.get_all():
            if key.lower() not in HOP_BY_HOP and key.lower() != "host":
                headers.add(key, value)
        headers["Host"] = f"127.0.0.1:{target.port}"
        headers["X-Forwarded-Prefix"] = headers["X-Forwarded-Context"] = self._context
        headers["X-Forwarded-Proto"] = self.request.protocol
        headers["X-Forwarded-Host"] = self.request.host
        body = self.request.body if self.request.body or self.request.method in ("POST", "PUT", "PATCH") else None
        url = self.get_client_uri("http", "127.0.0.1", target.port, path)
        for attempt in (1, 2):
            try:
                async with _session().request(self.request.method, url, headers=headers, data=body,
                                              allow_redirects=False) as answer:
                    self._send_headers(answer)
                    async for chunk in answer.content.iter_any():
                        self.write(chunk)
                        # Each piece goes out as it comes (server-sent events, streamed answers); waiting for
                        # it to be sent is the back-pressure. RequestHandler's own flush: the WebSocket
                        # mixin's wrapper returns nothing to wait on.
                        await RequestHandler.flush(self)
            except StreamClosedError:  # the browser went away (a closed event-stream page)
                return True
            except aiohttp.ServerDisconnectedError:
                if attempt == 1 and not self._headers_written:
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:  # refused, reset
                if self._headers_written:  # cut off mid-answer: end what was sent
                    self.finish()
                    return True
                log.info("proxy to 127.0.0.1:%d: %s", target.port, exc)
                return False
            self.finish()
            return True
        return False

    def _send_headers(self, answer: aiohttp.ClientResponse) -> None:
        self._headers = httputil.HTTPHeaders()  # the backend's headers, not Jupyter's defaults
        self.set_status(answer.status, answer.reason or None)
        for raw_key, raw_value in answer.raw_headers:
            key, value = raw_key.decode("latin-1"), raw_value.decode("latin-1")
            if key.lower() in HOP_BY_HOP:
                continue
            if key.lower() == "location":
                value = self._rewrite_location_header(value, "127.0.0.1", 0, "")
            self.add_header(key, value)

    def _rewrite_location_header(self, location, host, port, proxied_path):
        # A redirect to an absolute path of the app stays under the proxy's prefix.
        if location.startswith("/") and not location.startswith("//"):
            return self._context + location
        return location

    def _page(self, status: int, title: str, detail: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(f"<!doctype html><html><head><title>nbmodal: {html.escape(title)}</title></head><body>"
                    f"<h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>"
                    f"<p><small>nbmodal's proxy at {html.escape(self.request.path)}</small></p></body></html>")


_sessions: dict[int, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    """One aiohttp session per event loop, shared by every proxied request: its connections to the
    containers' servers are kept alive (tornado's own client opens one per request)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(id(loop))
    if session is None or session.closed:
        session = _sessions[id(loop)] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, use_dns_cache=False, keepalive_timeout=15),
            # No timeout on the whole answer: event streams and downloads last as long as they last.
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None),
            auto_decompress=False,  # bytes pass as they are, with their Content-Encoding
            skip_auto_headers=("Accept-Encoding", "User-Agent"), cookie_jar=aiohttp.DummyCookieJar())
    return session


def _gone_text(host: str, name: str, tunnel: pb.TunnelInfo) -> str:
    return (f"{name} on host {host} was served by run {tunnel.run_id} ({tunnel.label or tunnel.run_label}) in "
            f"container {tunnel.container_id}, port {tunnel.port}; {tunnel.ended}. Start it again (its cell, "
            f"or `with app.run():`) for a new URL.")


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."  # a close reason is at most 123 bytes


def setup_proxy(web_app) -> None:
    """Route ``<base_url>nbmodal/proxy/<host>/<name>[/<path>]`` to ``EndpointProxyHandler``."""
    base = url_path_join(web_app.settings["base_url"], "nbmodal", "proxy")
    web_app.add_handlers(".*$", [(base + r"/([^/]+)/([^/]+)(/.*)?", EndpointProxyHandler,
                                  {"resolver": Resolver()})])

"""JupyterHub's proxy hop in miniature, for tests: one route prefix (``/user/alice/``) to one server.

Like configurable-http-proxy in front of a single-user server: the path, the query and the ``Host``
header pass as they are (nothing is rewritten), ``X-Forwarded-*`` headers are added, answers stream
through as they come, and WebSockets are relayed both ways. Anything outside the prefix gets a 404
(a real Hub would answer it itself). Runs in a thread with its own event loop.

Example::

    with HubProxy("http://127.0.0.1:8888", "/user/alice/") as hub:
        urllib.request.urlopen(hub.url + "/user/alice/api/status")
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
WEBSOCKET_HANDSHAKE = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                       "sec-websocket-protocol", "sec-websocket-accept"}


class HubProxy:
    def __init__(self, upstream: str, prefix: str) -> None:
        self.upstream, self.prefix = upstream.rstrip("/"), prefix
        self.requests: list[str] = []  # "METHOD path" of every request routed, WebSockets as "WS path"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hub-proxy", daemon=True)

    def __enter__(self) -> HubProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.startswith(self.prefix):
            return web.Response(status=404, text=f"{request.path} is not routed by this hub")
        headers = {key: value for key, value in request.headers.items() if key.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = request.remote or ""
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Host"] = request.host
        target = self.upstream + request.raw_path  # path and query exactly as the browser sent them
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.requests.append(f"WS {request.raw_path}")
            return await self._websocket(request, target, headers)
        self.requests.append(f"{request.method} {request.raw_path}")
        body = await request.read()
        async with self._session.request(request.method, target, headers=headers, data=body or None,
                                         allow_redirects=False) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, target: str, headers: dict) -> web.StreamResponse:
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        upstream_headers = {k: v for k, v in headers.items() if k.lower() not in WEBSOCKET_HANDSHAKE}
        try:
            upstream = await self._session.ws_connect(target.replace("http", "ws", 1), headers=upstream_headers,
                                                      protocols=protocols)
        except aiohttp.WSServerHandshakeError as refused:
            return web.Response(status=refused.status, text=refused.message)
        browser = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
        await browser.prepare(request)

        async def pump(source, sink) -> None:
            async for message in source:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close()

        await asyncio.gather(pump(browser, upstream), pump(upstream, browser), return_exceptions=True)
        return browser

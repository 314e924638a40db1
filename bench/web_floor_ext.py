"""A Jupyter server extension for bench/bench_web_floor.py: handlers that do the least a proxied request must.

Under ``<base_url>webfloor/``: ``noop`` (a plain tornado handler answering {"ok":true}), ``noop-jupyter`` (the
same behind Jupyter's authentication), ``aiohttp/<port>`` and ``aiohttp-jupyter/<port>`` (one GET to
127.0.0.1:<port>/ with a shared aiohttp session, its body answered), ``socket/<port>`` and
``socket-jupyter/<port>`` (the same GET on a kept-alive asyncio stream with no HTTP client library at all:
the request written as bytes, the answer read by its Content-Length). Benchmark scaffolding only: no
streaming, no header relay, one backend.
"""

from __future__ import annotations

import asyncio

import aiohttp
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

_sessions: dict[int, aiohttp.ClientSession] = {}
_idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []


def _session() -> aiohttp.ClientSession:
    loop = id(asyncio.get_running_loop())
    if loop not in _sessions:
        _sessions[loop] = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    return _sessions[loop]


async def _aiohttp_get(port: str) -> bytes:
    async with _session().get(f"http://127.0.0.1:{port}/") as answer:
        return await answer.read()


async def _socket_get(port: str) -> bytes:
    for attempt in (1, 2):
        reader, writer = _idle.pop() if _idle else await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a kept connection the server closed while idle (uvicorn: 5 s)
            writer.close()
            if attempt == 2:
                raise
            continue
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        _idle.append((reader, writer))
        return body
    raise AssertionError("unreachable")


class Noop(web.RequestHandler):
    def get(self) -> None:
        self.finish(b'{"ok":true}')


class NoopJupyter(JupyterHandler):
    @web.authenticated
    def get(self) -> None:
        self.finish(b'{"ok":true}')


class Aiohttp(web.RequestHandler):
    async def get(self, port: str) -> None:
        self.finish(await _aiohttp_get(port))


class AiohttpJupyter(JupyterHandler):
    @web.authenticated
    async def get(self, port: str) -> None:
        self.finish(await _aiohttp_get(port))


class Socket(web.RequestHandler):
    async def get(self, port: str) -> None:
        self.finish(await _socket_get(port))


class SocketJupyter(JupyterHandler):
    @web.authenticated
    async def get(self, port: str) -> None:
        self.finish(await _socket_get(port))


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "web_floor_ext"}]


def _load_jupyter_server_extension(server_app) -> None:
    base = server_app.web_app.settings["base_url"] + "webfloor/"
    server_app.web_app.add_handlers(".*$", [
        (base + "noop", Noop), (base + "noop-jupyter", NoopJupyter),
        (base + r"aiohttp/(\d+)", Aiohttp), (base + r"aiohttp-jupyter/(\d+)", AiohttpJupyter),
        (base + r"socket/(\d+)", Socket), (base + r"socket-jupyter/(\d+)", SocketJupyter)])

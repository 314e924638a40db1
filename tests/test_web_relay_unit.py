"""The Jupyter proxy's HTTP/1.1 client (nbmodal/server/backend_http.py) against raw servers on loopback, and
where web URLs point under JupyterHub (nbmodal/_runtime/web_access.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from nbmodal import web
from nbmodal._runtime import web_access
from nbmodal.server import backend_http
from nbmodal.server.backend_http import BackendError, BackendPool
from nbmodal_wire import pb

pytestmark = pytest.mark.unit


class RawServer:
    """Answers each request read on a connection with the next of ``answers`` (raw bytes, or a list of
    pieces written with a pause between them, or None: close without answering); records requests."""

    def __init__(self, answers: list) -> None:
        self.answers, self.requests, self.connections = list(answers), [], 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                for piece in answer if isinstance(answer, list) else [answer]:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)  # each piece its own segment
        except asyncio.IncompleteReadError:
            pass
        writer.close()


async def _body(answer) -> list[tuple[bytes, bool]]:
    async with contextlib.aclosing(answer.pieces()) as pieces:
        return [piece async for piece in pieces]


def test_a_content_length_answer_comes_whole_and_its_connection_is_kept():
    async def main():
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
        async with RawServer([ok, ok]) as server:
            pool = BackendPool()
            answer = await pool.request("GET", server.port, "/a%20b?x=1", [("Host", "h"), ("X-Mine", "1")], None)
            assert (answer.status, answer.reason) == (200, "OK")
            assert ("Content-Type", "application/json") in answer.headers
            assert await _body(answer) == [(b'{"ok":true}', True)]
            answer = await pool.request("POST", server.port, "/", [("Host", "h")], b"payload")
            assert await _body(answer) == [(b'{"ok":true}', True)]
            assert server.connections == 1  # kept alive
            assert server.requests[0].startswith(b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Mine: 1\r\n\r\n")
            assert server.requests[1].endswith(b"Content-Length: 7\r\n\r\npayload")

    asyncio.run(main())


def test_chunked_and_close_delimited_answers_stream_piece_by_piece():
    async def main():
        chunked = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Folded: a\r\n b\r\n\r\n",
                   b"5;ext=1\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\nTrailer: x\r\n\r\n"]
        until_close = [b"HTTP/1.0 200 OK\r\n\r\n", b"one ", b"two"]
        async with RawServer([chunked, until_close]) as server:
            pool = BackendPool()
            answer = await pool.request("GET", server.port, "/", [], None)
            assert ("X-Folded", "a b") in answer.headers
            assert await _body(answer) == [(b"hello", False), (b" world", False)]
            answer = await pool.request("GET", server.port, "/", [], None)
            assert b"".join(data for data, _ in await _body(answer)) == b"one two"
            assert server.connections == 1  # the chunked answer left its connection reusable

    asyncio.run(main())


def test_answers_without_a_body_and_interim_answers():
    async def main():
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # HEAD: the length of the GET's body, none sent
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        redirect = b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n"
        async with RawServer([head, interim, redirect]) as server:
            pool = BackendPool()
            answer = await pool.request("HEAD", server.port, "/", [], None)
            assert answer.status == 200 and await _body(answer) == []
            answer = await pool.request("POST", server.port, "/", [], b"")
            assert answer.status == 204 and await _body(answer) == []
            answer = await pool.request("GET", server.port, "/", [], None)
            assert answer.status == 302 and ("Location", "/login") in answer.headers and await _body(answer) == []
            assert server.connections == 1

    asyncio.run(main())


def test_a_kept_alive_connection_the_server_closed_is_retried_once_on_a_new_one():
    async def main():
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with RawServer([ok, None]) as first:  # answers once, then closes on the next request
            pool = BackendPool()
            assert await _body(await pool.request("GET", first.port, "/", [], None)) == [(b"ok", True)]
            first.answers = [None, ok]  # the kept connection is closed unanswered; a new one is answered
            assert await _body(await pool.request("GET", first.port, "/", [], None)) == [(b"ok", True)]
            assert first.connections == 2

    asyncio.run(main())


def test_failures_are_backend_errors():
    async def main():
        cut_off = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"abc"]  # then the server closes
        async with RawServer([cut_off]) as server:
            pool = BackendPool()
            answer = await pool.request("GET", server.port, "/", [], None)
            with pytest.raises(BackendError, match="7 bytes before the body's end"):
                await _body(answer)
        async with RawServer([None]) as server:
            with pytest.raises(BackendError, match="without answering"):
                await BackendPool().request("GET", server.port, "/", [], None)
        async with RawServer([b"SSH-2.0-OpenSSH\r\n\r\n"]) as server:
            with pytest.raises(BackendError, match="not an HTTP/1.x answer"):
                await BackendPool().request("GET", server.port, "/", [], None)
        closed = server.port  # nothing listens there now
        with pytest.raises(OSError):
            await BackendPool().request("GET", closed, "/", [], None)

    asyncio.run(main())


def test_a_body_left_half_read_closes_its_connection():
    async def main():
        long = [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", b"abc", b"def"]
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with RawServer([long, ok]) as server:
            pool = BackendPool()
            answer = await pool.request("GET", server.port, "/", [], None)
            async with contextlib.aclosing(answer.pieces()) as pieces:
                async for _ in pieces:
                    break  # the browser went away
            assert await _body(await pool.request("GET", server.port, "/", [], None)) == [(b"ok", True)]
            assert server.connections == 2

    asyncio.run(main())


def test_idle_connections_too_old_to_reuse_are_closed():
    async def main():
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with RawServer([ok, ok]) as server:
            pool = BackendPool()
            await _body(await pool.request("GET", server.port, "/", [], None))
            (conn,) = pool._idle[server.port]
            pool._sweep(time.monotonic() + backend_http.IDLE_S + 1)  # as put_back does, now and then
            assert pool._idle == {} and conn.writer.is_closing()
            await _body(await pool.request("GET", server.port, "/", [], None))
            assert server.connections == 2

    asyncio.run(main())


# -- where the URLs point under JupyterHub ------------------------------------------------------------


def test_under_jupyterhub_urls_are_the_public_url_else_relative_to_the_hubs_origin(monkeypatch):
    monkeypatch.delenv(web_access.BASE_URL_ENV, raising=False)
    monkeypatch.delenv(web_access.HUB_PUBLIC_URL_ENV, raising=False)
    monkeypatch.setenv(web_access.HUB_PREFIX_ENV, "/user/alice/")
    # The single-user server's own URL (http://<pod>:8888/user/alice/) is not what the browser reaches.
    assert web_access.web_access("local").proxy_base == "/user/alice/nbmodal/proxy/local/"
    monkeypatch.setenv(web_access.HUB_PUBLIC_URL_ENV, "https://hub.example.org/user/alice/")
    assert web_access.web_access("gpu1").proxy_base == "https://hub.example.org/user/alice/nbmodal/proxy/gpu1/"
    monkeypatch.setenv(web_access.BASE_URL_ENV, "https://other.example.org/u/")  # the user's own word wins
    assert web_access.jupyter_base_url() == "https://other.example.org/u/"


def test_a_tunnel_with_a_url_relative_to_the_page_has_no_host_of_its_own():
    info = pb.TunnelInfo(url="/user/alice/nbmodal/proxy/local/t-1/", port=8000, tunnel_id="t-1")
    tunnel = web.tunnel_of(info)
    assert tunnel.url == info.url and tunnel.tls_socket == ("", 0)
    assert 'href="/user/alice/nbmodal/proxy/local/t-1/"' in tunnel._repr_html_()

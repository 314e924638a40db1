"""The Jupyter proxy's HTTP/1.1 client to the containers' servers on 127.0.0.1: lean, kept alive, streaming.

Why not aiohttp (which this relay first used): per request it builds a URL object, a request object, cookie
and trace machinery and a timer, which cost about as much as the backend's own answer to a trivial request
(bench/bench_web.py; issue 15's target is proxy p50 <= 2x direct). A relay needs much less: write the
request as the browser sent it, read the status line and headers, then hand the body on, piece by piece,
framed as RFC 9112 §6.3 says (no body, Content-Length, chunked, or until the server closes), and put the
connection back for the next request when the answer allows it.

Example::

    pool = BackendPool()
    answer = await pool.request("GET", 8000, "/", [("Host", "127.0.0.1:8000")], None)
    async with contextlib.aclosing(answer.pieces()) as pieces:
        async for data, last in pieces:
            ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

# uvicorn closes an idle kept-alive connection after 5 s (others after more): an older one is not reused.
IDLE_S = 4.0
CONNECT_TIMEOUT_S = 10.0
# Idle connections kept per port; more concurrent requests than this open (and then close) their own.
MAX_IDLE = 32
PIECE = 64 * 1024
HEAD_LIMIT = 256 * 1024  # status line and headers, at most


class BackendError(ConnectionError):
    """Nothing (or nothing valid) came back: refused, reset, closed, or not HTTP/1.x."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < IDLE_S and not self.reader.at_eof()
                and not self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class Answer:
    """A backend's status line and headers; ``pieces()`` streams its body."""

    def __init__(self, pool: BackendPool, port: int, conn: _Connection, status: int, reason: str,
                 headers: list[tuple[str, str]], framing: str, length: int, keep_alive: bool) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self.framing = framing  # none | length | chunked | close (RFC 9112 §6.3)
        self._pool, self._port, self._conn = pool, port, conn
        self._length, self._keep_alive = length, keep_alive

    async def pieces(self) -> AsyncGenerator[tuple[bytes, bool], None]:
        """``(data, last)`` as the body arrives; ``last`` is True where nothing more can follow.

        Run it to the end (the connection then goes back to the pool) or close it (``aclosing``): a body
        left half-read closes its connection. A body cut off by the server raises ``BackendError``.
        """
        reader, done = self._conn.reader, False
        try:
            if self.framing == "length":
                left = self._length
                while left:
                    data = await reader.read(min(left, PIECE))
                    if not data:
                        raise BackendError(f"the server closed the connection {left} bytes before the body's end")
                    left -= len(data)
                    yield data, left == 0
            elif self.framing == "chunked":
                async for data in _chunks(reader):
                    yield data, False
            elif self.framing == "close":
                while data := await reader.read(PIECE):
                    yield data, False
            done = True
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise BackendError(f"bad or cut-off body: {exc}") from exc
        finally:
            if done and self._keep_alive:
                self._pool.put_back(self._port, self._conn)
            else:
                self._conn.close()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)  # chunk extensions are ignored
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields: dropped
                pass
            return
        while size:
            data = await reader.read(min(size, PIECE))
            if not data:
                raise BackendError("the server closed the connection inside a chunk")
            size -= len(data)
            yield data
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk not followed by CRLF")


class BackendPool:
    """Kept-alive connections to ports on 127.0.0.1; one per event loop (asyncio streams belong to one)."""

    def __init__(self) -> None:
        self._idle: dict[int, list[_Connection]] = {}
        self._swept = time.monotonic()

    async def request(self, method: str, port: int, target: str, headers: list[tuple[str, str]],
                      body: bytes | None) -> Answer:
        """Send one request (``target``: path and query, already quoted) and read its answer's head.

        ``headers`` go as given (the caller leaves out hop-by-hop ones); ``Content-Length`` is added for a
        body. Raises ``BackendError`` (an ``OSError``) when no answer comes.
        """
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{key}: {value}" for key, value in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body:
            message += body
        for attempt in (1, 2):
            conn, reused = await self._take(port)
            try:
                conn.writer.write(message)
                if len(message) > PIECE:
                    await conn.writer.drain()
                return await self._read_head(port, conn, method)
            except asyncio.IncompleteReadError as exc:
                conn.close()
                if reused and attempt == 1 and not exc.partial:
                    continue  # a kept-alive connection the server had just closed: once more on a new one
                raise BackendError("the server closed the connection without answering") from exc
            except (asyncio.LimitOverrunError, ValueError) as exc:
                conn.close()
                raise BackendError(f"not an HTTP/1.x answer: {exc}") from exc
            except OSError:
                conn.close()
                if reused and attempt == 1:
                    continue
                raise
        raise AssertionError("unreachable")

    def put_back(self, port: int, conn: _Connection) -> None:
        now = time.monotonic()
        if now - self._swept > IDLE_S:
            self._sweep(now)
        idle = self._idle.setdefault(port, [])
        if len(idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    def _sweep(self, now: float) -> None:
        """Close idle connections too old to reuse (the newest are taken first, so old ones would linger,
        and those of ports no longer served would stay open for good)."""
        self._swept = now
        for port, idle in list(self._idle.items()):
            keep = []
            for conn in idle:
                if conn.usable(now):
                    keep.append(conn)
                else:
                    conn.close()
            if keep:
                self._idle[port] = keep
            else:
                del self._idle[port]

    async def _take(self, port: int) -> tuple[_Connection, bool]:
        idle = self._idle.get(port)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn, True
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, limit=HEAD_LIMIT), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise BackendError(f"no connection to port {port} within {CONNECT_TIMEOUT_S:g} s") from exc
        return _Connection(reader, writer), False

    async def _read_head(self, port: int, conn: _Connection, method: str) -> Answer:
        while True:
            raw = await conn.reader.readuntil(b"\r\n\r\n")
            status_line, *fields = raw[:-4].decode("latin-1").split("\r\n")
            version, _, rest = status_line.partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise ValueError(f"status line {status_line[:80]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: the final answer follows
            break
        headers: list[tuple[str, str]] = []
        for field in fields:
            if field[:1] in (" ", "\t") and headers:  # obsolete line folding: part of the previous value
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + field.strip())
                continue
            name, colon, value = field.partition(":")
            if not colon:
                raise ValueError(f"header line {field[:80]!r}")
            headers.append((name.strip(), value.strip()))
        framing, length, keep_alive = _framing(method, status, version, headers)
        return Answer(self, port, conn, status, reason, headers, framing, length, keep_alive)


def _framing(method: str, status: int, version: str, headers: list[tuple[str, str]]) -> tuple[str, int, bool]:
    """(how the body is framed: none, length, chunked, close; its length; whether the connection is reusable)."""
    connection = ",".join(v for k, v in headers if k.lower() == "connection").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0, keep_alive
    codings = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
    if codings:
        if codings.rsplit(",", 1)[-1].strip() == "chunked":
            return "chunked", 0, keep_alive
        return "close", 0, False
    lengths = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ValueError(f"Content-Length {sorted(lengths)}")
        return "length", int(lengths.pop()), keep_alive
    return "close", 0, False

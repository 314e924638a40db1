"""Length-prefixed protobuf frames over a stream socket.

The agent and its containers talk over a private socket pair; each frame is a
4-byte little-endian length followed by one serialized message. The container
side is blocking (it runs user code on its main thread), the agent side asyncio.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.message import Message

if TYPE_CHECKING:  # a container imports this module, and asyncio costs ~10 ms of its start
    import asyncio

HEADER = struct.Struct("<I")  # each frame's body length, before the body
M = TypeVar("M", bound=Message)


class FrameSocket:
    """Blocking frame I/O; sends are serialized so threads may share it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Message) -> None:
        body = message.SerializeToString()
        header = HEADER.pack(len(body))
        with self._send_lock:
            if len(body) < 65536:
                self._sock.sendall(header + body)
            else:  # don't copy a large body just to prepend four bytes
                self._sock.sendall(header)
                self._sock.sendall(body)

    def receive(self, message_type: type[M]) -> M | None:
        """The next message, or None once the peer has closed the socket."""
        header = self._read_exactly(HEADER.size)
        if header is None:
            return None
        (length,) = HEADER.unpack(header)
        body = self._read_exactly(length)
        if body is None:
            return None
        return message_type.FromString(body)

    def _read_exactly(self, n: int) -> bytearray | None:
        return recv_exactly(self._sock, n)

    def close(self) -> None:
        self._sock.close()


def recv_exactly(sock: socket.socket, size: int, start: bytes | bytearray = b"") -> bytearray | None:
    """``start`` followed by what ``sock`` brings until it is ``size`` bytes; None once the peer closed it."""
    buf = bytearray(size)
    buf[:len(start)] = start
    view = memoryview(buf)
    got = len(start)
    while got < size:
        k = sock.recv_into(view[got:], size - got)
        if k == 0:
            return None
        got += k
    return buf


async def read_frame(reader: asyncio.StreamReader, message_type: type[M]) -> M | None:
    """The next message from an asyncio stream, or None at end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
        (length,) = HEADER.unpack(header)
        body = await reader.readexactly(length)
    except (EOFError, ConnectionError):  # asyncio.IncompleteReadError is an EOFError
        return None
    return message_type.FromString(body)


def write_frame(writer: asyncio.StreamWriter, message: Message) -> None:
    body = message.SerializeToString()
    if len(body) < 65536:
        # One write, so one send(): two would wake the reader for the header alone, then again for the body.
        writer.write(HEADER.pack(len(body)) + body)
    else:  # don't copy a large body just to prepend four bytes
        writer.write(HEADER.pack(len(body)))
        writer.write(body)

"""A port of a host's loopback, reachable as a port on this machine's loopback.

On the local agent's machine a container's port is already here. For an SSH
host, a ``LocalForwarder`` (``tunnel.py``) carries each connection to a local
port over a ``direct-tcpip`` channel of the host's *current* SSH transport
(the same one its agent's gRPC uses), so it survives a reconnect. One
forwarder per (host, port) is kept for the life of the process: the Jupyter
proxy and ``nbmodal forward`` share this.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from nbmodal._runtime.connection import HostConnection, connection
from nbmodal._runtime.tunnel import LocalForwarder
from nbmodal.hosts import LOCAL

_forwarders: dict[tuple[str, int, int], LocalForwarder] = {}
_lock = threading.Lock()


def local_port(host: str, port: int, listen_port: int = 0) -> int:
    """The port on 127.0.0.1 here that leads to ``port`` on ``host``'s loopback.

    ``listen_port``: listen on that port (0: the host's own port for the local agent, else any free one).
    """
    if host == LOCAL and listen_port in (0, port):
        return port
    key = (host, port, listen_port)
    with _lock:
        forwarder = _forwarders.get(key)
        if forwarder is None:
            forwarder = _forwarders[key] = LocalForwarder(_opener(host, port), f"{host}:{port}", port=listen_port)
        return forwarder.port


def forwarding(host: str, port: int) -> bool:
    """Whether ``local_port(host, port)`` has its forward already (it would not block)."""
    return host == LOCAL or (host, port, 0) in _forwarders


def close(host: str, port: int, listen_port: int = 0) -> None:
    """Stop forwarding (``nbmodal forward`` ending)."""
    with _lock:
        forwarder = _forwarders.pop((host, port, listen_port), None)
    if forwarder is not None:
        forwarder.close()


def _opener(host: str, port: int):
    if host == LOCAL:  # another local port than the container's own (nbmodal forward --local-port)
        return lambda: _SocketChannel(socket.create_connection(("127.0.0.1", port), timeout=10))
    conn = connection(host)
    assert isinstance(conn, HostConnection)

    def open_channel() -> Any:
        conn.client()  # connected (or reconnected) first: the channel rides its current transport
        assert conn.ssh is not None
        return conn.ssh.open_forward(port)

    return open_channel


class _SocketChannel:
    """A plain socket with the one attribute of a paramiko channel that ``LocalForwarder`` reads."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        self._sock = sock

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()

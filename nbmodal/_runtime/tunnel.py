"""A local port that leads to the agent on a host, over the host's one SSH transport.

gRPC connects to 127.0.0.1:<local port>; each TCP connection it opens is
carried by a ``direct-tcpip`` channel of the host's current SSH transport to
the agent's loopback port there. When the transport is replaced after a drop,
new connections use the new one, so the gRPC channel recovers by itself.
That is why this is ours rather than fabric's ``Connection.forward_local``,
which is bound to one transport for the length of a ``with`` block.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any, cast

import paramiko

log = logging.getLogger(__name__)


class LocalForwarder:
    def __init__(self, open_channel: Callable[[], paramiko.Channel], label: str, port: int = 0) -> None:
        """Listens on 127.0.0.1:``port`` (0: a free one; ``nbmodal forward --local-port`` names one)."""
        self._open_channel = open_channel
        self._label = label
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if port:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._pairs: list[tuple[socket.socket, paramiko.Channel]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"forward-{label}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                channel = self._open_channel()
            except Exception as exc:  # the transport is down: gRPC sees a refused connection and retries
                log.info("%s: no channel to the agent (%s)", self._label, exc)
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, channel))
            threading.Thread(target=self._pump, args=(client, channel), name=f"pump-{self._label}",
                             daemon=True).start()

    def _pump(self, client: socket.socket, channel: paramiko.Channel) -> None:
        try:
            pump_between(client, channel)
        finally:
            with self._lock:
                if (client, channel) in self._pairs:
                    self._pairs.remove((client, channel))

    def drop_connections(self) -> None:
        """Close carried connections (their transport is gone): gRPC reconnects."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, channel in pairs:
            client.close()
            channel.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_connections()


def pump_between(sock: socket.socket, channel: paramiko.Channel) -> None:
    """Copy bytes both ways between a local socket and an SSH channel until either side closes; close both."""
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, channel)
    selector.register(channel, selectors.EVENT_READ, sock)
    try:
        while True:
            for key, _ in selector.select(timeout=1.0):
                source, sink = cast(Any, key.fileobj), key.data
                data = source.recv(1 << 16)
                if not data:
                    return
                sink.sendall(data)
            if channel.closed:
                return
    except OSError:
        pass
    finally:
        selector.close()
        sock.close()
        channel.close()

"""A container's supervisor: keeps the container's socket open while no agent is there to read it.

Started by the agent (remote_agent/supervision.py) for a container whose run has lasted a moment, with a
duplicate of the agent's end of the container's socket and one end of a link to the agent. While the
agent lives it only waits on that link: the agent reads and writes the container's socket itself, so no
frame takes an extra hop. When the link closes without a release (the agent crashed, was killed, or is
restarting) the supervisor takes over reading the container's frames and appends their bytes, unparsed,
to ``<id>.spool``, so the container's prints never block; and it waits on ``<id>.sock`` for the next
agent. That agent sends ``adopt``; the supervisor stops reading and passes the socket (SCM_RIGHTS); the
agent reads the spool first and the socket after it, one unbroken stream of frames. The adopting
connection is the new link. A release (``x`` on the link) ends the supervisor: the agent stops the
container itself. If the container ends while no agent is there, the spool stays for the next agent,
which replays it and records how the run ended.

Run by path with ``python -I -S`` (standard library only): it starts in milliseconds and holds nothing
of the agent's.

    python -I -S supervisor.py --container-fd 5 --agent-fd 6 --socket DIR/c-1.sock --spool DIR/c-1.spool
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import time

SPOOL_LIMIT_BYTES = 1 << 30  # beyond this the container's prints wait until an agent comes back
ADOPT = b"adopt\n"
END = b"end\n"  # `nbmodal agent stop --force` after killing the agent: let the container go, and exit
GRANTED = b"ok\n"
BUSY = b"busy\n"  # an agent holds the link: another one may not adopt it
RELEASE = b"x"
READY = b"r"
REQUEST_TIMEOUT_S = 1.0  # how long an asker may take to say what it wants


def main() -> None:
    parser = argparse.ArgumentParser(prog="supervisor.py")
    parser.add_argument("--container-fd", type=int, required=True)
    parser.add_argument("--agent-fd", type=int, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--spool", required=True)
    args = parser.parse_args()
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)  # a terminal's hangup or ^C is not the container's end
    container = socket.socket(fileno=args.container_fd)
    link: socket.socket | None = socket.socket(fileno=args.agent_fd)
    listener = _listen(args.socket)
    try:
        assert link is not None
        try:
            link.sendall(READY)
        except OSError:
            pass  # the agent died as it started us: the link reads as closed, and we take over
        while link is not None:
            if _linked(link, listener):
                break  # released: the agent ends the container itself
            link = _unlinked(container, listener, args.spool)
    finally:
        try:
            os.unlink(args.socket)
        except OSError:
            pass


def _log(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor {os.getpid()}: {text}\n")
    sys.stderr.flush()


def _listen(path: str) -> socket.socket:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is the agent user's alone
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(4)
    return listener


def _linked(link: socket.socket, listener: socket.socket) -> bool:
    """Wait while the agent holds the link; True when it released us, False when it went away."""
    while True:
        readable, _, _ = select.select([link, listener], [], [])
        if link in readable:  # first: a caller waiting on the listener may be the next agent
            try:
                data = link.recv(64)
            except OSError:
                data = b""
            if RELEASE in data:
                return True
            if not data:
                link.close()
                _log("the agent went away; keeping the container and its output until the next one")
                return False
        if listener in readable:
            _refuse(listener)


def _refuse(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    try:
        # The request is read first: closing with it unread would make the asker's send fail (EPIPE) before
        # it reads the answer, and it would take this supervisor for a dead one.
        conn.settimeout(REQUEST_TIMEOUT_S)
        conn.recv(64)
        conn.sendall(BUSY)
    except OSError:
        pass
    conn.close()


def _unlinked(container: socket.socket, listener: socket.socket, spool_path: str) -> socket.socket | None:
    """Spool the container's frames until an agent adopts it (its link), or it ends (None)."""
    spool = os.open(spool_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    size = os.fstat(spool).st_size
    try:
        while True:
            watched = [listener] + ([container] if size < SPOOL_LIMIT_BYTES else [])
            readable, _, _ = select.select(watched, [], [])
            if container in readable:
                try:
                    data = container.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    _log("the container ended while no agent was there; its output is in the spool")
                    return None
                view = memoryview(data)
                while view:
                    view = view[os.write(spool, view):]
                size += len(data)
            if listener in readable:
                try:
                    link = _hand_over(container, listener)
                except _End:
                    _log("ended by `nbmodal agent stop`: the container sees its socket close")
                    return None
                if link is not None:
                    return link
    finally:
        os.close(spool)


def _hand_over(container: socket.socket, listener: socket.socket) -> socket.socket | None:
    conn, _ = listener.accept()
    conn.settimeout(5)
    try:
        request = b""
        while not request.endswith(b"\n") and len(request) < 64:
            chunk = conn.recv(64)
            if not chunk:
                break
            request += chunk
        if request == END:
            conn.sendall(GRANTED)
            conn.close()
            raise _End()
        if request != ADOPT:
            conn.close()
            return None
        socket.send_fds(conn, [GRANTED], [container.fileno()])
    except OSError as exc:
        _log(f"an agent's adoption failed: {exc}")
        conn.close()
        return None
    conn.settimeout(None)
    _log("adopted by the next agent")
    return conn


class _End(Exception):
    pass


if __name__ == "__main__":
    main()

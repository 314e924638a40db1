"""The local run socket: warm runs between a client and the agent of its own machine, without gRPC.

A warm ``f.remote()`` on the local agent spends most of its millisecond in gRPC's machinery on both
sides (a thread hop through the request iterator, the aio server's tasks), not in the run. So the
agent also listens on a Unix socket in its state dir (``runs.sock``), and a client of the local agent
sends its runs there, one after another, as it would on a RunStream: a ``RunRequest`` frame, then the
run's ``RunEvent`` frames up to ``finished``. Anything else (cancel, attach, input answers, blobs) stays
on gRPC. The socket lives in the state dir (mode 0700) and a connection must first send the agent's
token, so it admits exactly whom the gRPC port admits; containers never use it (their calls carry their
own token and scope).

Frames: a 4-byte little-endian length, one kind byte, the body. Client → agent: ``TOKEN`` (UTF-8), then
``REQUEST`` (a RunRequest) each run. Agent → client: ``EVENT`` (a RunEvent) or ``REFUSED`` (UTF-8
``"<grpc status name>\\n<details>"``, after which the agent closes the connection).

    >>> frame(EVENT, b"abc")
    b'\\x03\\x00\\x00\\x00\\x02abc'
"""

from __future__ import annotations

import struct
from pathlib import Path

HEADER = struct.Struct("<IB")  # body length, kind
TOKEN, REQUEST, EVENT, REFUSED = 0, 1, 2, 3
SOCKET_NAME = "runs.sock"
# AF_UNIX paths are at most 107 bytes: a longer state dir gets no run socket (its clients use gRPC).
MAX_PATH_BYTES = 107


def socket_path(state_dir: Path | str) -> Path:
    """Where the agent of ``state_dir`` listens for local runs."""
    return Path(state_dir) / SOCKET_NAME


def usable_path(path: Path) -> bool:
    """Whether ``path`` fits in an AF_UNIX address."""
    return len(str(path).encode()) <= MAX_PATH_BYTES


def frame(kind: int, body: bytes) -> bytes:
    """One frame: header and body."""
    return HEADER.pack(len(body), kind) + body


def refusal(status_name: str, details: str) -> bytes:
    """A REFUSED frame's body."""
    return f"{status_name}\n{details}".encode()


def parse_refusal(body: bytes) -> tuple[str, str]:
    """(grpc status name, details) of a REFUSED frame's body."""
    name, _, details = body.decode(errors="replace").partition("\n")
    return name, details

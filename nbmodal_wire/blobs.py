"""Large values travel as blob files, not inside messages.

A value whose pickle (protocol 5) is over ``INLINE_LIMIT`` is written to a
file in the agent's ``blobs/`` dir: a header, the pickle, then its large
buffers (numpy arrays' memory) out of band. A reader maps the file and hands
those buffers to pickle without copying, so an array that crossed is backed
by the mapped file (copy-on-write: writable, the file is never changed).

On the agent's own machine the notebook reads and writes these files
directly; from another machine they are streamed in chunks (PutBlob/GetBlob).

Layout: 8-byte little-endian header length, header (a pickle of the data
length and the buffer lengths), the pickle data, each buffer.
"""

from __future__ import annotations

import mmap
import os
import pickle
import re
import secrets
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

INLINE_LIMIT = 1 << 20
CHUNK_BYTES = 4 << 20
_LENGTH = struct.Struct("<Q")


BLOB_ID = re.compile(r"b-[0-9a-f]{16}")


def new_blob_id() -> str:
    return "b-" + secrets.token_hex(8)


def valid_blob_path(path: Path) -> bool:
    return bool(BLOB_ID.fullmatch(path.name)) and path.is_file()


class Encoded:
    """A pickled value: ``inline`` bytes, or ``data`` plus out-of-band ``buffers`` for a blob."""

    def __init__(self, inline: bytes | None = None, data: bytes = b"", buffers: list | None = None) -> None:
        self.inline = inline
        self.data = data
        self.buffers = buffers or []

    @property
    def is_blob(self) -> bool:
        return self.inline is None

    @property
    def size(self) -> int:
        if self.inline is not None:
            return len(self.inline)
        return len(self.data) + sum(b.raw().nbytes for b in self.buffers)

    def header(self) -> bytes:
        header = pickle.dumps((len(self.data), [b.raw().nbytes for b in self.buffers]))
        return _LENGTH.pack(len(header)) + header

    def chunks(self) -> Iterator[memoryview | bytes]:
        """The blob file's content, in pieces (without copying the buffers)."""
        yield self.header()
        yield self.data
        for buffer in self.buffers:
            raw = buffer.raw()
            for start in range(0, raw.nbytes, CHUNK_BYTES):
                yield raw[start:start + CHUNK_BYTES]


def encode(value: Any, dumps: Callable[..., bytes], inline_limit: int = INLINE_LIMIT) -> Encoded:
    """Pickle ``value``; small results stay inline, large ones become blob content."""
    buffers: list[pickle.PickleBuffer] = []
    data = dumps(value, buffer_callback=buffers.append)
    encoded = Encoded(data=data, buffers=buffers)
    if encoded.size <= inline_limit:
        return Encoded(inline=dumps(value) if buffers else data)
    return encoded


def write_blob(path: Path, encoded: Encoded) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        for chunk in encoded.chunks():
            f.write(chunk)
    os.replace(tmp, path)


def read_blob(path: Path, delete: bool = False) -> Any:
    """Unpickle a blob file, mapping its buffers instead of copying them."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
    if delete:
        path.unlink(missing_ok=True)  # the mapping outlives the file
    return decode_blob_bytes(memoryview(mapped))


def decode_blob_bytes(content: memoryview) -> Any:
    (header_length,) = _LENGTH.unpack_from(content, 0)
    offset = _LENGTH.size
    data_length, buffer_lengths = pickle.loads(content[offset:offset + header_length])
    offset += header_length
    data = content[offset:offset + data_length]
    offset += data_length
    buffers = []
    for length in buffer_lengths:
        buffers.append(content[offset:offset + length])
        offset += length
    return pickle.loads(data, buffers=buffers)

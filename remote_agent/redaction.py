"""Masking secret values in what a run or a build shows: output, displays, errors, build logs.

A value of ``MIN_MASKED_LENGTH`` characters or more becomes ``***`` before an event is numbered,
logged or streamed, so the cell, ``nbmodal logs``, attach, replay and saved notebooks all see the mask.
Output arrives in chunks, so a value may be split across two of them: ``StreamRedactor`` holds back
the end of a chunk while it could be the start of a value, until the next chunk (or a flush) says.

    >>> r = Redactor(["hunter22"])
    >>> s = StreamRedactor(r)
    >>> s.feed(b"pw: hun") + s.feed(b"ter22!") + s.flush()
    b'pw: ***!'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from nbmodal_wire import pb
from nbmodal_wire.secret_rules import MASK, masked_values

_MASK_BYTES = MASK.encode()


class Redactor:
    """Replaces each of ``values`` (those long enough to mask) in text and bytes."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = masked_values(list(values))
        self.encoded = [v.encode() for v in self.values]
        self._bytes = re.compile(b"|".join(re.escape(v) for v in self.encoded)) if self.encoded else None
        self._text = re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        return self._text.sub(MASK, text) if self._text is not None and text else text

    def data(self, data: bytes) -> bytes:
        return self._bytes.sub(_MASK_BYTES, data) if self._bytes is not None and data else data

    def contains(self, data: bytes) -> bool:
        """Whether any value appears in ``data`` as UTF-8 (a pickle holds its strings so)."""
        return self._bytes is not None and self._bytes.search(data) is not None

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` may be the start of a value (so must wait for more)."""
        longest = max((len(v) for v in self.encoded), default=0)
        for size in range(min(longest - 1, len(data)), 0, -1):
            tail = data[-size:]
            if any(v.startswith(tail) for v in self.encoded):
                return size
        return 0

    def display(self, display: pb.Display) -> pb.Display:
        """A display with every string of its mime bundle and metadata masked (text/plain, HTML…)."""
        if not self:
            return display
        masked = pb.Display()
        masked.CopyFrom(display)
        masked.data_json = _masked_json(display.data_json, self)
        masked.metadata_json = _masked_json(display.metadata_json, self)
        return masked

    def finished(self, finished: pb.RunFinished) -> pb.RunFinished:
        """A result with its error message and traceback masked; a pickled exception that holds a value is
        dropped (the client then rebuilds the error from its type name and masked message). A name a cell
        assigned that holds a value is left out (it would land in the notebook and the run's log), with why."""
        if not self:
            return finished
        for name, data in list(finished.values.items()):
            if self.contains(data):
                del finished.values[name]
                finished.left_out.append(pb.ValueInfo(
                    name=name, type_name="a secret's value",
                    reason="it holds a secret's value, which stays in the container (use it there)"))
        if not finished.HasField("error"):
            return finished
        error = finished.error
        error.message = self.text(error.message)
        error.traceback = self.text(error.traceback)
        if error.exception and self.contains(error.exception):
            error.exception = b""
        return finished


def _masked_json(text: str, redactor: Redactor) -> str:
    if not text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return redactor.text(text)
    return json.dumps(_masked(value, redactor))


def _masked(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, list):
        return [_masked(v, redactor) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v, redactor) for k, v in value.items()}
    return value


class StreamRedactor:
    """One output stream's masking: ``feed`` returns what may be shown now, ``flush`` the rest."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self.redactor.data(self.pending + data)
        held = self.redactor.held_back(buffer)
        self.pending = buffer[len(buffer) - held:] if held else b""
        return buffer[:len(buffer) - held] if held else buffer

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return rest

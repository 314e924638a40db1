"""``nbmodal.io_streams``: Modal's ``StreamReader``/``StreamWriter`` (a Sandbox process's streams); not
available yet."""

from __future__ import annotations

from nbmodal._unavailable import StreamReader, StreamWriter

__all__ = ["StreamReader", "StreamWriter"]

"""``nbmodal.file_io``: Modal's ``FileIO`` (a file in a Sandbox's filesystem); not available yet."""

from __future__ import annotations

from nbmodal._unavailable import FileIO

__all__ = ["FileIO"]

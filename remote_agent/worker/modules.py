"""Modules that travel by source: the notebook's own local modules
(a ``utils.py`` beside the notebook) exist only on the notebook's machine.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import types


def load_module_from_source(name: str, source: str, filename: str) -> types.ModuleType:
    """Rebuild a module from its source; reused while the source is unchanged."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__nbmodal_source_sha256__", None) == digest:
        return existing
    module = types.ModuleType(name)
    module.__file__ = filename
    module.__nbmodal_source_sha256__ = digest  # type: ignore[attr-defined]
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def code_with_source(filename: str, lines: list[str], code_args: tuple) -> types.CodeType:
    """Rebuild a code object whose source lives only in the notebook kernel,
    remembering the source so tracebacks can show its lines."""
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return types.CodeType(*code_args)

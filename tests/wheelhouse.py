"""Tiny pure-Python wheels written directly, so tests install packages offline.

    wheel = build_wheel(tmp_path / "wheels", "fakelib", "1.0", {"fakelib": "VALUE = 1"})
    # uv pip install --no-index --find-links tmp_path/wheels fakelib

No build backend and no network: a wheel is a zip with the modules, the
``.dist-info`` metadata (METADATA, WHEEL) and a RECORD of hashes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path


def build_wheel(dest: Path, name: str, version: str, modules: dict[str, str],
                requires: Sequence[str] = (), import_sleep_s: float = 0) -> Path:
    """Write ``{name}-{version}-py3-none-any.whl`` into ``dest``; returns its path.

    ``modules`` maps a module name ("fakelib", "fakelib.sub") or a file path in
    the wheel ("fakelib/data.txt") to its text; the parent packages of dotted
    names get an empty ``__init__.py`` unless given. ``requires`` become
    ``Requires-Dist`` lines. With ``import_sleep_s``, each top-level module
    sleeps that long when first imported (a stand-in for a heavy import).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dist = re.sub(r"[-_.]+", "_", name)  # the wheel filename's escaped distribution name
    files = _module_files(modules)
    if import_sleep_s:
        sleep = f"import time as _time\n_time.sleep({float(import_sleep_s)!r})\n"
        for path in files:
            if path.count("/") == 0 or (path.endswith("/__init__.py") and path.count("/") == 1):
                files[path] = sleep + files[path]
    info = f"{dist}-{version}.dist-info"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Requires-Dist: {req}\n" for req in requires)])
    files[f"{info}/METADATA"] = metadata
    files[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: nbmodal-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def _module_files(modules: dict[str, str]) -> dict[str, str]:
    """Paths in the wheel -> text, with the packages that dotted module names need."""
    files: dict[str, str] = {}
    for key, text in modules.items():
        if "/" in key or key.endswith((".py", ".txt", ".json")):
            files[key] = text
            continue
        parts = key.split(".")
        for depth in range(1, len(parts)):
            files.setdefault("/".join(parts[:depth]) + "/__init__.py", "")
        files["/".join(parts) + ".py"] = text
    # A module given as "pkg" while "pkg.sub" exists is the package's __init__.
    for path in list(files):
        package = path[:-3] + "/__init__.py"
        if path.endswith(".py") and any(p.startswith(path[:-3] + "/") for p in files if p != path):
            files[package] = files.pop(path) or files.get(package, "")
    return files


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"

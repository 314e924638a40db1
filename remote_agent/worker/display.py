"""Rich display inside a container, without IPython.

``display(obj)`` turns an object into a Jupyter mime bundle using the same
``_repr_*_`` protocol IPython uses (plus matplotlib figures as PNG) and sends
it to the notebook, after any output printed before it.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)
_BINARY_MIMES = {"image/png", "image/jpeg"}

# Set by the container's main loop: publish(bundle, metadata, execute_result).
_publisher: Callable[[dict, dict, bool], None] | None = None


def set_publisher(publish: Callable[[dict, dict, bool], None]) -> None:
    global _publisher
    _publisher = publish


def display(*objs: Any, raw: bool = False, **_ignored: Any) -> None:
    """Show objects in the notebook cell, as IPython's ``display`` does.

    Example (inside a ``%%remote`` cell)::

        display(df.head())
    """
    for obj in objs:
        if raw:
            publish(obj, {}, execute_result=False)
        else:
            data, metadata = mime_bundle(obj)
            publish(data, metadata, execute_result=False)


def publish(data: dict, metadata: dict, execute_result: bool) -> None:
    if _publisher is None:  # not inside a container: behave like print
        print(data.get("text/plain", ""))
        return
    _publisher(data, metadata, execute_result)


def mime_bundle(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if _is_matplotlib_figure(obj):
        data["image/png"] = figure_png(obj)
    bundle_method = getattr(obj, "_repr_mimebundle_", None)
    if callable(bundle_method) and not isinstance(obj, type):
        try:
            result = bundle_method(include=None, exclude=None)
        except Exception:
            log.debug("_repr_mimebundle_ failed for %r", type(obj), exc_info=True)
            result = None
        if isinstance(result, tuple):
            result, md = result
            metadata.update(md or {})
        if isinstance(result, dict):
            data.update(result)
    for method_name, mime in _REPR_METHODS:
        if mime in data:
            continue
        method = getattr(obj, method_name, None)
        if not callable(method) or isinstance(obj, type):
            continue
        try:
            value = method()
        except Exception:
            log.debug("%s failed for %r", method_name, type(obj), exc_info=True)
            continue
        if isinstance(value, tuple):
            value, md = value
            metadata[mime] = md
        if value is not None:
            data[mime] = value
    for mime in _BINARY_MIMES:
        if isinstance(data.get(mime), (bytes, bytearray)):
            data[mime] = base64.b64encode(data[mime]).decode("ascii")
    if "application/json" in data and isinstance(data["application/json"], str):
        data["application/json"] = json.loads(data["application/json"])
    data.setdefault("text/plain", _plain_text(obj))
    return data, metadata


def figure_png(figure: Any) -> str:
    import io

    buf = io.BytesIO()
    figure.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def flush_figures() -> None:
    """Display and close the figures a cell left open, as the inline backend does."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or __name__.rsplit(".", 1)[0] + ".mpl_backend" not in str(pyplot.get_backend()):
        return
    for number in pyplot.get_fignums():
        display(pyplot.figure(number))
    pyplot.close("all")


def _is_matplotlib_figure(obj: Any) -> bool:
    figure_module = sys.modules.get("matplotlib.figure")
    return figure_module is not None and isinstance(obj, figure_module.Figure)


def _plain_text(obj: Any) -> str:
    if _is_matplotlib_figure(obj):
        width, height = obj.get_size_inches() * obj.dpi
        return f"<Figure size {width:g}x{height:g} with {len(obj.axes)} Axes>"
    try:
        import pprint

        return pprint.pformat(obj) if isinstance(obj, (dict, list, tuple, set)) else repr(obj)
    except Exception as exc:  # a broken __repr__ must not fail the run
        return f"<{type(obj).__name__} object (repr failed: {exc!r})>"


class _IPythonDisplayHook:
    """When user code imports IPython's display functions in a container, they publish here too.

    ``from IPython.display import display, HTML`` is how notebooks show things;
    without a kernel IPython's own ``display`` would only print. The import
    goes through as usual; its ``display`` is then ours.
    """

    _TARGET = "IPython.core.display_functions"

    def find_spec(self, name, path=None, target=None):
        if name != self._TARGET:
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module):
            original_exec(module)
            module.display = display

        loader.exec_module = exec_module
        return spec


def route_ipython_display() -> None:
    """Install the hook (and patch an IPython already imported)."""
    already = sys.modules.get(_IPythonDisplayHook._TARGET)
    if already is not None:
        already.display = display  # type: ignore[attr-defined]
        if "IPython.display" in sys.modules:
            sys.modules["IPython.display"].display = display  # type: ignore[attr-defined]
        return
    sys.meta_path.insert(0, _IPythonDisplayHook())

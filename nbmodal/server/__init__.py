"""nbmodal's Jupyter server extension: the REST API the JupyterLab sidebar polls (handlers.py)."""

from __future__ import annotations


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "nbmodal.server"}]


def _load_jupyter_server_extension(server_app) -> None:
    from nbmodal.server.handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("nbmodal: sidebar API at %snbmodal/api/", server_app.web_app.settings["base_url"])

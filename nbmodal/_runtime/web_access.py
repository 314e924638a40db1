"""Where the user's browser reaches ports served from containers: the Jupyter server's proxy.

Every run carries a ``pb.WebAccess`` (built in ``invocation._build``): the URL
prefix under which the Jupyter server's nbmodal proxy serves the run's host,
``<jupyter url>nbmodal/proxy/<host>/``. A tunnel's URL is that prefix, its
name and a slash. The Jupyter server is found, in this order:

1. ``NBMODAL_WEB_BASE_URL`` (the server's URL as the browser sees it, e.g. on
   JupyterHub or Binder ``https://hub.example.org/user/alice/``);
2. under JupyterHub (and so on Binder), whose single-user server's own URL
   (``http://<pod>:8888/user/alice/``) is not what the browser reaches:
   ``JUPYTERHUB_PUBLIC_URL`` (the server's public URL, set when the Hub knows
   it), else ``JUPYTERHUB_SERVICE_PREFIX`` alone (``/user/alice/``): a URL
   relative to the page's origin, which links in the notebook and the sidebar
   resolve against the Hub's public address, whatever proxies sit in between;
3. among running Jupyter servers (their ``jpserver-*.json`` in Jupyter's
   runtime directory), the one that started this kernel (``JPY_PARENT_PID``)
   or an ancestor process of this one;
4. else the most recently started running server.

With none, the prefix is empty: a local agent's port is then reachable at
``http://127.0.0.1:PORT/``, an SSH host's with ``nbmodal forward``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from nbmodal_wire import pb
from nbmodal_wire.pids import pid_alive

log = logging.getLogger(__name__)

BASE_URL_ENV = "NBMODAL_WEB_BASE_URL"
# Set by JupyterHub for the single-user server (and inherited by its kernels and terminals).
HUB_PUBLIC_URL_ENV = "JUPYTERHUB_PUBLIC_URL"
HUB_PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"
PROXY_PATH = "nbmodal/proxy"
_CACHE_S = 5.0
_cache: tuple[float, str] | None = None


def web_access(host: str) -> pb.WebAccess:
    """The WebAccess of a run on ``host`` (the client's name of it: ``local`` or a configured host)."""
    base = jupyter_base_url()
    return pb.WebAccess(proxy_base=proxy_base(base, host) if base else "", host=host)


def proxy_base(jupyter_url: str, host: str) -> str:
    """``<jupyter url>nbmodal/proxy/<host>/``."""
    return f"{jupyter_url.rstrip('/')}/{PROXY_PATH}/{host}/"


def jupyter_base_url() -> str:
    """The URL of the Jupyter server the user's browser has open ("" when there is none), ending in "/".

    Under JupyterHub without a known public URL it is the server's path alone (``/user/alice/``).

    Example::

        jupyter_base_url()  # 'http://127.0.0.1:8888/', or '/user/alice/' on a JupyterHub
    """
    global _cache
    configured = os.environ.get(BASE_URL_ENV, "").strip() or os.environ.get(HUB_PUBLIC_URL_ENV, "").strip()
    if configured:
        return configured.rstrip("/") + "/"
    hub_prefix = os.environ.get(HUB_PREFIX_ENV, "").strip()
    if hub_prefix:
        return "/" + hub_prefix.strip("/") + "/" if hub_prefix.strip("/") else "/"
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < _CACHE_S:
        return _cache[1]
    try:
        url = _choose(running_servers())
    except OSError as exc:  # an unreadable runtime dir: no proxy, said once per look
        log.info("no Jupyter server found for web URLs (%s)", exc)
        url = ""
    _cache = (now, url)
    return url


def running_servers(runtime_dir: str | None = None) -> list[dict[str, Any]]:
    """Running Jupyter servers of this user (their ``jpserver-<pid>.json``), newest first."""
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    root = Path(runtime_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.glob("jpserver-*.json"):
        try:
            info = json.loads(path.read_text())
            mtime = path.stat().st_mtime
        except (OSError, ValueError):  # being written, or just removed
            continue
        if isinstance(info, dict) and pid_alive(int(info.get("pid", 0))) and info.get("url"):
            found.append((mtime, info))
    return [info for _, info in sorted(found, key=lambda pair: pair[0], reverse=True)]


def _choose(servers: list[dict[str, Any]]) -> str:
    if not servers:
        return ""
    ancestors = _ancestors()
    parent = os.environ.get("JPY_PARENT_PID", "")
    if parent.isdigit():
        ancestors.insert(0, int(parent))
    for pid in ancestors:
        for info in servers:
            if int(info.get("pid", 0)) == pid:
                return _url(info)
    return _url(servers[0])


def _url(info: dict[str, Any]) -> str:
    return str(info["url"]).rstrip("/") + "/"




def _ancestors() -> list[int]:
    """This process's parent, grandparent, … (Linux /proc; elsewhere just the parent)."""
    chain, pid = [], os.getppid()
    for _ in range(32):
        if pid <= 1 or pid in chain:
            break
        chain.append(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain

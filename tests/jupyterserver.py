"""A real Jupyter server (or JupyterLab) for the sidebar's tests, with nbmodal's server extension on."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    def __init__(self, url: str, token: str, process: subprocess.Popen, log_path: Path) -> None:
        self.url, self.token, self.process, self.log_path = url, token, process, log_path

    def request(self, method: str, path: str, token: bool = True, data: bytes | None = None):
        """(status, body bytes) of a call to ``/nbmodal/api/<path>``."""
        request = urllib.request.Request(f"{self.url}nbmodal/api/{path}", method=method, data=data)
        if token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


@contextlib.contextmanager
def jupyter_server(root: Path, app: str = "server", base_url: str = "/", extensions: tuple[str, ...] = ()):
    """``jupyter server`` (or ``app="lab"``) on a free loopback port, serving ``root`` under ``base_url``
    (JupyterHub's single-user servers: ``/user/<name>/``), with nbmodal's server extension and ``extensions``
    (modules the server can import) on."""
    port, token = free_port(), secrets.token_hex(16)
    log_path = root / f"jupyter-{app}.log"
    enabled = {"nbmodal.server": True, **dict.fromkeys(extensions, True)}
    argv = [sys.executable, "-m", "jupyterlab" if app == "lab" else "jupyter_server", "--no-browser",
            f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--ServerApp.jpserver_extensions={enabled!r}", "--allow-root",
            f"--ServerApp.base_url={base_url}"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), cwd=root)
    path = f"/{base_url.strip('/')}/" if base_url.strip("/") else "/"
    server = JupyterServer(f"http://127.0.0.1:{port}{path}", token, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{server.url}api/status?token={token}", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter {app} didn't start:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()

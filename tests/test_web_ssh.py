"""A web endpoint on an SSH host in a network namespace (alpha: its loopback is not this machine's), reached
through a real Jupyter server's proxy over the host's SSH transport, and with ``nbmodal forward --host``.

The client is a separate process with its own nbmodal home whose one host is alpha (as a user's would be),
and so is the Jupyter server; alpha is left as it was found (its nbmodal state removed at the end).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyterserver import free_port, jupyter_server
from waiting import wait_for

pytestmark = pytest.mark.ssh

FIRST_USE_TIMEOUT_S = 600  # the first run bootstraps the offline host (its venv from shipped wheels)

PROGRAM = """
import subprocess, sys, tempfile, pathlib
import nbmodal
from nbmodal._runtime.connection import connection
from nbmodal_wire import pb

app = nbmodal.App("sshweb")
PORT = {port}

@app.function(host="alpha")
@nbmodal.web_server(PORT, startup_timeout=30)
def files():
    root = pathlib.Path(tempfile.mkdtemp())
    (root / "index.html").write_text("hello from alpha")
    subprocess.Popen([sys.executable, "-m", "http.server", str(PORT), "--bind", "127.0.0.1"], cwd=root,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

with app.run():
    tunnels = connection("alpha").client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
    run_id = next(t.run_id for t in tunnels if t.live and t.name == "sshweb-files")
    print("URL", files.get_web_url(), flush=True)
    print("LOCAL", nbmodal.web.local_url(files), flush=True)
    print("RUN", run_id, flush=True)
    sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def alpha_home(ssh_hosts, tmp_path_factory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("web-ssh-home")
    alpha = ssh_hosts.alpha
    added = _nbmodal(home, "host", "add", alpha.name, alpha.name, "--ssh-config", str(alpha.config_path))
    assert added.returncode == 0, added.stdout + added.stderr
    yield home
    alpha.forget_nbmodal()  # alpha is shared by the session: tests of a first use expect it fresh


def _nbmodal(home: Path, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NBMODAL_HOME": str(home)}, **kwargs)


@pytest.fixture(scope="module")
def server(alpha_home, tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyter-web-ssh")
    previous = os.environ["NBMODAL_HOME"]
    os.environ["NBMODAL_HOME"] = str(alpha_home)  # the server's nbmodal knows alpha (its env is copied at start)
    try:
        with jupyter_server(root) as running:
            os.environ["NBMODAL_HOME"] = previous
            yield running
    finally:
        os.environ["NBMODAL_HOME"] = previous


def test_an_endpoint_on_an_ssh_host_through_the_jupyter_proxy_and_nbmodal_forward(alpha_home, server, tmp_path):
    program = tmp_path / "serve.py"
    port = free_port()  # alpha's own loopback: any port free there; this machine's free one will do
    program.write_text(textwrap.dedent(PROGRAM.format(port=port)))
    out = tmp_path / "serve.out"
    env = {**os.environ, "NBMODAL_HOME": str(alpha_home), "NBMODAL_WEB_BASE_URL": server.url}
    with open(out, "w") as sink:
        client = subprocess.Popen([sys.executable, str(program)], stdin=subprocess.PIPE, stdout=sink,
                                  stderr=subprocess.STDOUT, env=env, text=True)
    try:
        wait_for(lambda: "RUN " in out.read_text() or client.poll() is not None, FIRST_USE_TIMEOUT_S,
                 "the endpoint on alpha to serve")
        said = [line.split(" ", 1) for line in out.read_text().splitlines()]
        lines = {words[0]: words[1] for words in said if words[0] in ("URL", "LOCAL", "RUN") and len(words) == 2}
        assert "URL" in lines, out.read_text()
        url, run_id = lines["URL"], lines["RUN"]
        assert url == f"{server.url}nbmodal/proxy/alpha/sshweb-files/"

        request = urllib.request.Request(url, headers={"Authorization": f"token {server.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.read() == b"hello from alpha"
        with urllib.request.urlopen(lines["LOCAL"], timeout=30) as response:  # nbmodal.web.local_url
            assert response.read() == b"hello from alpha"

        local_port = free_port()
        forward_out = tmp_path / "forward.out"
        with open(forward_out, "w") as sink:
            forward = subprocess.Popen(
                [sys.executable, "-m", "nbmodal.cli", "forward", run_id, str(port), "--local-port", str(local_port)],
                stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: "until Ctrl-C" in forward_out.read_text() or forward.poll() is not None, 60,
                     "nbmodal forward to start")
            assert "on alpha" in forward_out.read_text(), forward_out.read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/", timeout=30) as response:
                assert response.read() == b"hello from alpha"
        finally:
            forward.terminate()
            forward.wait(timeout=30)
    finally:
        client.communicate("\n", timeout=60)
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("the ended endpoint still answered")
    except urllib.error.HTTPError as error:
        assert error.code == 502 and f"run {run_id}" in error.read().decode()


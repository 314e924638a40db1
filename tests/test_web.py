"""Web UIs on the local agent, through a real Jupyter server: ``nbmodal.forward`` in a function, the proxy's
refusal without Jupyter's auth and its 502 page once the container has ended, a ``@web_server`` whose port
never opens, and ``nbmodal forward`` from the command line with a plain HTTP client."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from jupyterserver import free_port, jupyter_server
from waiting import wait_for

import nbmodal
from nbmodal._runtime import web_access
from nbmodal._runtime.connection import get_client
from nbmodal_wire import pb

pytestmark = pytest.mark.agent

app = nbmodal.App("webtests")


def forward_page(port: int, queue_name: str, page: str) -> str:
    """(In a container) a plain http.server on ``port`` serving ``page`` as index.html, forwarded (its URL
    printed) until something arrives on the queue; the tunnel's URL."""
    import pathlib
    import subprocess
    import sys
    import tempfile

    root = pathlib.Path(tempfile.mkdtemp())
    (root / "index.html").write_text(page)
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with nbmodal.forward(port) as tunnel:
            print("URL", tunnel.url, flush=True)
            nbmodal.Queue.from_name(queue_name).get(timeout=100)
            return tunnel.url
    finally:
        server.kill()


@app.function(timeout=120)
def serve_files(port: int, queue_name: str) -> str:
    return forward_page(port, queue_name, "hello from a container")


kinds = nbmodal.App("webtests-kinds")


@kinds.cls()
class Doubler:
    @nbmodal.enter()
    def load(self):
        self.factor = 2  # set once per container, used by every request

    @nbmodal.fastapi_endpoint(method="GET")
    def double(self, x: float):
        return {"y": self.factor * x}


@kinds.function()
@nbmodal.wsgi_app()
def classic():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"wsgi saw {environ['PATH_INFO']}".encode()]

    return app


never = nbmodal.App("webtests-never")


@never.function()
@nbmodal.web_server(free_port(), startup_timeout=1)
def starts_nothing():
    pass  # forgets to start its server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyter-web")
    with jupyter_server(root) as running:
        previous = os.environ.get(web_access.BASE_URL_ENV)
        os.environ[web_access.BASE_URL_ENV] = running.url  # runs started here link through this server
        try:
            yield running
        finally:
            if previous is None:
                os.environ.pop(web_access.BASE_URL_ENV, None)
            else:
                os.environ[web_access.BASE_URL_ENV] = previous


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """(status, final URL, body) of a GET; redirects followed."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.url, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, url, error.read().decode()


def _live_tunnel(run_id: str) -> pb.TunnelInfo | None:
    tunnels = get_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
    return next((t for t in tunnels if t.run_id == run_id and t.live), None)


@pytest.fixture()
def forwarded(server):
    """A spawned function serving files on a forwarded port: (call, tunnel, queue)."""
    with nbmodal.Queue.ephemeral() as queue:
        call = serve_files.spawn(free_port(), queue.name)
        tunnel = wait_for(lambda: _live_tunnel(call.object_id), 60, "the function's forwarded port")
        yield call, tunnel, queue
        queue.put("stop")


def test_a_forwarded_port_is_served_through_jupyter_and_ends_with_its_container(server, forwarded):
    call, tunnel, queue = forwarded
    url = f"{server.url}nbmodal/proxy/local/{tunnel.tunnel_id}/"
    assert tunnel.url == url  # what tunnel.url said in the container
    # Until its http.server listens, the proxy says that nothing answers on the port.
    status, _, body = wait_for(lambda: (answer := _get(url, server.token))[0] == 200 and answer, 30,
                               "the forwarded server to answer through the proxy")
    assert body == "hello from a container"

    # The port number names it too.
    assert _get(f"{server.url}nbmodal/proxy/local/{tunnel.port}/", server.token)[2] == "hello from a container"

    # Without Jupyter's auth: the login page, never the container's content.
    status, landed, body = _get(url)
    assert "/login" in landed and "hello from a container" not in body

    queue.put("stop")
    assert call.get(timeout=60) == url
    status, _, body = _get(url, server.token)
    assert status == 502
    assert f"run {call.object_id}" in body and "has ended" in body and tunnel.tunnel_id in body


def test_a_web_server_whose_port_never_opens_fails_with_that_message(server):
    with pytest.raises(nbmodal.exception.InvalidError, match=r"nothing listened on port \d+ within startup_timeout=1"):
        with never.run():
            pass


def test_nbmodal_forward_relays_a_containers_port_to_a_local_port(forwarded, tmp_path):
    call, tunnel, _ = forwarded
    local_port = free_port()
    log = tmp_path / "forward.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "nbmodal.cli", "forward", call.object_id, str(tunnel.port),
                                    "--local-port", str(local_port)], stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(os.environ))
    try:
        wait_for(lambda: "until Ctrl-C" in Path(log).read_text() or process.poll() is not None, 30,
                 "nbmodal forward to start")
        assert f"http://127.0.0.1:{local_port}/" in log.read_text(), log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/", timeout=30) as response:
            assert response.read() == b"hello from a container"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert "forwarding stopped" in log.read_text()


def test_nbmodal_forward_names_a_run_that_has_ended(server):
    finished = nbmodal.App("webtests-done").function()(lambda: 1)
    call = finished.spawn()
    call.get(timeout=60)
    done = subprocess.run([sys.executable, "-m", "nbmodal.cli", "forward", call.object_id, "8000"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"run {call.object_id} has ended (SUCCEEDED)" in done.stderr


deployed = nbmodal.App("webtests-deployed")


@deployed.function()
@nbmodal.fastapi_endpoint()
def greet(name: str = "nobody") -> dict:
    return {"hello": name}


def test_a_deployed_apps_endpoint_stays_served_until_the_app_stops(server):
    deployed.deploy()
    try:
        url = greet.get_web_url()
        assert url == f"{server.url}nbmodal/proxy/local/webtests-deployed-greet/"
        status, _, body = wait_for(lambda: (answer := _get(url + "?name=web", server.token))[0] == 200 and answer,
                                   60, "the deployed endpoint to serve")
        assert body == '{"hello":"web"}'
    finally:
        stopped = subprocess.run([sys.executable, "-m", "nbmodal.cli", "app", "stop", "webtests-deployed"],
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
    status, _, body = wait_for(lambda: (answer := _get(url, server.token))[0] == 502 and answer, 30,
                               "the un-deployed endpoint's 502 page")
    assert "has ended" in body


def test_class_method_and_wsgi_endpoints_serve_while_the_app_runs(server):
    assert sorted(kinds.registered_web_endpoints) == ["Doubler.double", "classic"]
    with kinds.run():
        with urllib.request.urlopen(nbmodal.web.local_url(Doubler().double) + "?x=21", timeout=30) as response:
            assert response.read() == b'{"y":42.0}'
        url = classic.get_web_url()
        assert _get(url + "some/path", server.token)[1:] == (url + "some/path", "wsgi saw /some/path")


relay = nbmodal.App("webtests-relay")


@relay.function()
@nbmodal.asgi_app()
def relayed():
    # Starlette, not FastAPI: this module's annotations are strings FastAPI could not resolve.
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, RedirectResponse, StreamingResponse
    from starlette.routing import Route

    async def moved(request):
        return RedirectResponse("/target?x=1", status_code=302)

    async def echo(request):
        body = await request.body()
        return PlainTextResponse(f"{request.method} {body.decode()} prefix={request.headers['x-forwarded-prefix']}")

    async def stream(request):
        queue = nbmodal.Queue.from_name(request.query_params["queue"])

        async def pieces():
            yield "first;"
            await asyncio.to_thread(queue.get, timeout=60)  # until the test has read the first piece
            yield "second"

        return StreamingResponse(pieces(), media_type="text/plain")

    async def cut(request):
        async def pieces():
            yield b"abc"
            raise RuntimeError("the server dies mid-answer")

        return StreamingResponse(pieces(), headers={"Content-Length": "10"})

    return Starlette(routes=[Route("/moved", moved), Route("/echo", echo, methods=["POST"]),
                             Route("/stream", stream), Route("/cut", cut)])


def _request(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    """An http.client response to one request (redirects not followed), for reading piece by piece."""

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
    return conn.getresponse()


def test_the_proxy_keeps_redirects_under_its_prefix_relays_bodies_streams_and_checks_xsrf(server):
    auth = {"Authorization": f"token {server.token}"}
    with relay.run(), nbmodal.Queue.ephemeral() as queue:
        url = relayed.get_web_url()
        prefix = url.split("127.0.0.1", 1)[1].split("/", 1)[1].rstrip("/")  # nbmodal/proxy/local/<name>
        moved = _request(url + "moved", headers=auth)
        assert moved.status == 302 and moved.headers["Location"] == f"/{prefix}/target?x=1"

        posted = _request(url + "echo", "POST", auth, b"payload")
        assert (posted.status, posted.read()) == (200, f"POST payload prefix=/{prefix}".encode())

        # A browser's POST (its login cookie, no token) needs Jupyter's XSRF token, as any request to Jupyter.
        login = _request(url, headers=auth)
        cookie = "; ".join(v.split(";", 1)[0] for k, v in login.getheaders() if k.lower() == "set-cookie")
        assert cookie.startswith("username-")
        refused = _request(url + "echo", "POST", {"Cookie": cookie}, b"payload")
        assert refused.status == 403 and b"payload" not in refused.read()
        xsrf = {"Cookie": f"{cookie}; _xsrf=abc123", "X-XSRFToken": "abc123"}
        assert _request(url + "echo", "POST", xsrf, b"payload").read().startswith(b"POST payload")
        assert _request(url + "echo", "POST", {}, b"payload").status == 403  # no login at all

        # A plain streamed answer (not an event stream): its first piece arrives before the second exists.
        streamed = _request(url + f"stream?queue={queue.name}", headers=auth)
        assert streamed.status == 200 and streamed.read1(100) == b"first;"
        queue.put("go on")
        assert streamed.read() == b"second"

        # An answer the server cuts off reaches the browser cut off too, never as if complete.
        cut = _request(url + "cut", headers=auth)
        assert cut.status == 200 and cut.headers["Content-Length"] == "10"
        with pytest.raises(http.client.IncompleteRead):
            cut.read()
        assert _request(url + "echo", "POST", auth, b"again").read().startswith(b"POST again")

"""Web UIs, the parts that need no agent: decorators, endpoint names and URLs, finding the Jupyter server,
the agent's tunnel registry, and the sidebar's endpoint rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from test_sidebar_shapes import check_shape

import nbmodal
from nbmodal import web
from nbmodal._runtime import web_access
from nbmodal._web_endpoints import endpoint_name, web_url
from nbmodal.exceptions import InvalidError
from nbmodal.server import dashboard
from nbmodal_wire import pb
from remote_agent.request_errors import RequestError
from remote_agent.tunnels import TunnelRegistry

pytestmark = pytest.mark.unit


# -- decorators -------------------------------------------------------------------------


def test_web_decorators_mark_the_function_with_modals_keywords():
    app = nbmodal.App("shop")

    @app.function()
    @nbmodal.fastapi_endpoint(method="post", docs=True)
    def buy(item: str):
        return {"bought": item}

    @app.function()
    @nbmodal.web_server(8000, startup_timeout=30, label="board")
    def board():
        pass

    @app.function()
    @nbmodal.asgi_app(label="api", requires_proxy_auth=True, custom_domains=["x.example"])
    def api():
        pass

    @app.function()
    @nbmodal.wsgi_app()
    def legacy():
        pass

    @app.function()
    def plain():
        pass

    assert web.web_config(buy.raw_f) == web.WebConfig("fastapi_endpoint", method="POST", docs=True)
    assert web.web_config(board.raw_f) == web.WebConfig("web_server", port=8000, startup_timeout=30.0, label="board")
    assert sorted(app.registered_web_endpoints) == ["api", "board", "buy", "legacy"]
    assert endpoint_name(buy) == "shop-buy" and endpoint_name(board) == "board" and endpoint_name(api) == "api"
    assert plain.get_web_url() is None


def test_web_endpoints_on_class_methods_are_registered():
    app = nbmodal.App("clsweb")

    @app.cls()
    class Model:
        @nbmodal.fastapi_endpoint()
        def predict(self, x: float = 1.0):
            return {"y": 2 * x}

        @nbmodal.method()
        def other(self):
            return 1

    assert app.registered_web_endpoints == ["Model.predict"]
    assert endpoint_name(Model().predict) == "clsweb-model-predict"


@pytest.mark.parametrize("make, message", [
    (lambda: nbmodal.web_server(0), "port must be an int"),
    (lambda: nbmodal.web_server("8000"), "port must be an int"),
    (lambda: nbmodal.web_server(8000, startup_timeout=0), "startup_timeout"),
    (lambda: nbmodal.fastapi_endpoint(method="FETCH"), "method='FETCH'"),
    (lambda: nbmodal.asgi_app(label="Not A Label"), "label="),
    (lambda: nbmodal.asgi_app(lambda: None), "parentheses"),
])
def test_bad_web_decorator_arguments_say_what_is_wrong(make, message):
    with pytest.raises(InvalidError, match=message):
        make()


def test_a_web_decorator_above_app_function_says_the_order():
    app = nbmodal.App()
    with pytest.raises(InvalidError, match="goes below @app.function"):
        nbmodal.fastapi_endpoint()(app.function()(lambda: 1))


def test_forward_outside_a_container_says_where_it_works(monkeypatch):
    monkeypatch.delenv("NBMODAL_CONTAINER_TOKEN", raising=False)
    with pytest.raises(InvalidError, match="inside a container"):
        with nbmodal.forward(8000):
            pass
    with pytest.raises(InvalidError, match="1 to 65535"):
        with nbmodal.forward(70000):
            pass


def test_a_tunnel_is_modals_tunnel():
    info = pb.TunnelInfo(url="http://127.0.0.1:8888/nbmodal/proxy/gpu1/t-1/", port=8000, tunnel_id="t-1")
    tunnel = web.tunnel_of(info)
    assert tunnel.tls_socket == ("127.0.0.1", 8888) and tunnel.url.endswith("/t-1/")
    assert tunnel.unencrypted_port == 8000
    with pytest.raises(InvalidError, match="unencrypted=True"):
        tunnel.tcp_socket  # noqa: B018
    assert web.tunnel_of(info, unencrypted=True).tcp_socket == ("127.0.0.1", 8000)
    assert 'target="_blank"' in tunnel._repr_html_()


def test_get_web_url_is_the_proxy_url_of_the_endpoint(monkeypatch):
    monkeypatch.setenv(web_access.BASE_URL_ENV, "https://hub.example.org/user/alice")
    app = nbmodal.App("demo")

    @app.function(host="gpu1")
    @nbmodal.fastapi_endpoint()
    def square(x: int):
        return x * x

    assert square.get_web_url() == "https://hub.example.org/user/alice/nbmodal/proxy/gpu1/demo-square/"
    assert web_url(square) == square.get_web_url()


# -- finding the Jupyter server -------------------------------------------------------------


def _server_file(directory, pid: int, url: str, mtime: float) -> None:
    path = directory / f"jpserver-{pid}.json"
    path.write_text(json.dumps({"pid": pid, "url": url, "base_url": "/"}))
    os.utime(path, (mtime, mtime))


def test_the_jupyter_server_is_the_kernels_parent_else_the_newest(tmp_path, monkeypatch):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _server_file(tmp_path, os.getppid(), "http://127.0.0.1:1111/", 100)  # an ancestor of this process
        _server_file(tmp_path, sleeper.pid, "http://127.0.0.1:2222/lab-base/", 200)
        _server_file(tmp_path, 999_999_999, "http://127.0.0.1:3333/", 300)  # a dead server's file
        servers = web_access.running_servers(str(tmp_path))
        assert [s["url"] for s in servers] == ["http://127.0.0.1:2222/lab-base/", "http://127.0.0.1:1111/"]
        monkeypatch.setenv("JPY_PARENT_PID", str(sleeper.pid))  # the server that started this kernel
        assert web_access._choose(servers) == "http://127.0.0.1:2222/lab-base/"
        monkeypatch.delenv("JPY_PARENT_PID")
        assert web_access._choose(servers) == "http://127.0.0.1:1111/"
        assert web_access._choose(servers[:1]) == "http://127.0.0.1:2222/lab-base/"  # else the newest
        assert web_access._choose([]) == ""
    finally:
        sleeper.kill()
        sleeper.wait()


def test_no_jupyter_server_means_no_proxy_prefix(tmp_path, monkeypatch):
    monkeypatch.delenv(web_access.BASE_URL_ENV, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(web_access, "_cache", None)
    assert web_access.web_access("local") == pb.WebAccess(host="local")
    monkeypatch.setenv(web_access.BASE_URL_ENV, "http://127.0.0.1:8888")
    assert web_access.web_access("gpu1").proxy_base == "http://127.0.0.1:8888/nbmodal/proxy/gpu1/"


# -- the agent's registry ------------------------------------------------------------------


class _Runs:
    def __init__(self) -> None:
        self.runs: dict[str, SimpleNamespace] = {}

    def add(self, run_id: str, web: pb.WebAccess | None = None) -> SimpleNamespace:
        request = pb.RunRequest(web=web) if web is not None else pb.RunRequest()
        run = SimpleNamespace(id=run_id, done=False, request=request,
                              info=pb.RunInfo(run_id=run_id, label=f"{run_id}()", state=pb.RUNNING))
        self.runs[run_id] = run
        return run

    def get(self, run_id: str):
        return self.runs.get(run_id)


def _registry(callers=None):
    runs, containers = _Runs(), []
    registry = TunnelRegistry(runs, lambda: containers, callers or (lambda run_id: [run_id]))
    return registry, runs, containers


def test_a_container_opens_lists_and_closes_its_tunnels():
    registry, runs, containers = _registry()
    run = runs.add("r-00000001", pb.WebAccess(proxy_base="http://j/nbmodal/proxy/gpu1/", host="gpu1"))
    container = SimpleNamespace(id="c-1", run=run, alive=True)
    containers.append(container)
    opened = registry.call(pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=8000), container).tunnel
    assert opened.name == opened.tunnel_id and opened.url == f"http://j/nbmodal/proxy/gpu1/{opened.tunnel_id}/"
    assert opened.live and opened.host == "gpu1" and opened.run_label == "r-00000001()"
    web_ep = registry.call(pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=9000, name="demo-square",
                                            kind="fastapi_endpoint", label="square"), container).tunnel
    listed = registry.call(pb.TunnelRequest(op=pb.TUNNEL_LIST), None).tunnels
    assert {t.name for t in listed} == {opened.name, "demo-square"}
    closed = registry.call(pb.TunnelRequest(op=pb.TUNNEL_CLOSE, tunnel_id=opened.tunnel_id), container).tunnel
    assert not closed.live and closed.ended == "closed by its container"
    run.done = True  # the run ended: its endpoint with it
    ended = {t.name: t for t in registry.list()}["demo-square"]
    assert not ended.live and "run r-00000001 has ended" in ended.ended and ended.tunnel_id == web_ep.tunnel_id


def test_a_tunnel_ends_with_its_container():
    registry, runs, containers = _registry()
    container = SimpleNamespace(id="c-2", run=runs.add("r-00000002"), alive=True)
    containers.append(container)
    registry.open(container, pb.TunnelRequest(port=8000))
    containers.clear()
    (tunnel,) = registry.list()
    assert not tunnel.live and tunnel.ended == "its container c-2 has ended"


def test_a_nested_runs_tunnel_takes_its_callers_web_access():
    registry, runs, containers = _registry(callers=lambda run_id: [run_id, "r-000000aa"])
    runs.add("r-000000aa", pb.WebAccess(proxy_base="http://j/nbmodal/proxy/local/", host="local"))
    container = SimpleNamespace(id="c-3", run=runs.add("r-000000bb"), alive=True)
    containers.append(container)
    assert registry.open(container, pb.TunnelRequest(port=8000, name="x")).url == "http://j/nbmodal/proxy/local/x/"


@pytest.mark.parametrize("request_, container, message", [
    (pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=80), None, "only code in a container"),
    (pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=0), "idle", "runs nothing"),
    (pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=70000), "busy", "not a TCP port"),
    (pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=80, name="no spaces"), "busy", "endpoint name"),
    (pb.TunnelRequest(op=pb.TUNNEL_OPEN, port=80, kind="ftp"), "busy", "unknown tunnel kind"),
    (pb.TunnelRequest(op=pb.TUNNEL_CLOSE, tunnel_id="t-nope"), "busy", "no tunnel"),
])
def test_bad_tunnel_calls_are_refused_with_the_reason(request_, container, message):
    registry, runs, _ = _registry()
    callers = {"idle": SimpleNamespace(id="c-9", run=None, alive=True),
               "busy": SimpleNamespace(id="c-9", run=runs.add("r-00000009"), alive=True)}
    with pytest.raises(RequestError, match=message):
        registry.call(request_, callers.get(container))


# -- the sidebar's rows -------------------------------------------------------------------


@pytest.mark.parametrize("live", [True, False])
def test_endpoint_rows_match_the_sidebars_interface(live):
    tunnel = pb.TunnelInfo(tunnel_id="t-1", name="demo-square", port=8000, run_id="r-00000001", container_id="c-1",
                           kind="fastapi_endpoint", label="square", created=1.0, live=live,
                           ended="" if live else "run r-00000001 has ended (CANCELLED)")
    row = dashboard.endpoint_row("gpu1", tunnel)
    check_shape(row, "EndpointInfo")
    assert row["path"] == "nbmodal/proxy/gpu1/demo-square/" and row["state"] == ("serving" if live else "ended")

"""Web URLs as on JupyterHub and Binder: JupyterLab under ``/user/alice/`` behind one more proxy hop.

mybinder.org can't be reached from here, so this is its equivalent: JupyterLab runs with base URL
``/user/alice/`` (as a Hub's single-user server does) behind a reverse proxy that rewrites nothing
(``tests/hubproxy.py``, as configurable-http-proxy), and the client sees the environment a Hub gives
kernels (``JUPYTERHUB_SERVICE_PREFIX``, no public URL known). In headless Chromium, logged in through the
hop: the URL ``get_web_url()`` gives and a ``forward()`` tunnel's URL (relative to the page's origin) open
through the hop (HTTP, a WebSocket, server-sent events), so does the sidebar's Endpoints link, the same URL
made absolute with ``NBMODAL_WEB_BASE_URL``, and without login the Hub's base URL's login page answers.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotations (WebSocket) at run
# time, from names imported inside the function.
from urllib.parse import urljoin

import pytest
from hubproxy import HubProxy
from jupyterserver import free_port, jupyter_server
from test_sidebar_browser import CHROMIUM, CHROMIUM_ARGS, ROOT
from test_web import forward_page
from test_web_browser import _ECHO, _EVENTS, demo_api
from waiting import wait_for

import nbmodal
from nbmodal._runtime import web_access
from nbmodal._runtime.connection import get_client
from nbmodal_wire import pb

pytestmark = pytest.mark.browser

PREFIX = "/user/alice/"
hub = nbmodal.App("hubweb")


@hub.function()
@nbmodal.asgi_app()
def api():
    return demo_api("through the hub", 0.1)


@hub.function(timeout=120)
def serve_forwarded(port: int, queue_name: str) -> str:
    return forward_page(port, queue_name, "forwarded through the hub")


@pytest.fixture()
def hub_lab(tmp_path, monkeypatch):
    """JupyterLab under /user/alice/ behind the hop, and a client environment as a Hub's kernels have."""
    data = tmp_path / "jupyter-data"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "nbmodal-labextension").symlink_to(ROOT / "nbmodal" / "labextension")
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    root = tmp_path / "lab"
    root.mkdir()
    with jupyter_server(root, app="lab", base_url=PREFIX) as lab:
        assert lab.url.endswith(PREFIX)
        with HubProxy(lab.url[: -len(PREFIX)], PREFIX) as proxy:
            monkeypatch.delenv(web_access.BASE_URL_ENV, raising=False)
            monkeypatch.delenv(web_access.HUB_PUBLIC_URL_ENV, raising=False)
            monkeypatch.setenv(web_access.HUB_PREFIX_ENV, PREFIX)
            yield lab, proxy


def _live_tunnel(run_id: str):
    tunnels = get_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
    return next((t for t in tunnels if t.run_id == run_id and t.live), None)


def test_endpoint_and_forward_urls_open_through_a_hub_proxy_under_a_base_url(hub_lab, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    lab, proxy = hub_lab
    with hub.run(), nbmodal.Queue.ephemeral() as queue:
        url = api.get_web_url()
        assert url == f"{PREFIX}nbmodal/proxy/local/hubweb-api/"  # relative to the Hub's public origin
        call = serve_forwarded.spawn(free_port(), queue.name)
        forwarded = wait_for(lambda: _live_tunnel(call.object_id), 60, "the function's forwarded port")
        assert forwarded.url == f"{PREFIX}nbmodal/proxy/local/{forwarded.tunnel_id}/"

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            refused = browser.new_page()
            refused.goto(urljoin(proxy.url, url))
            assert refused.url.startswith(f"{proxy.url}{PREFIX}login") and "through the hub" not in refused.content()
            refused.close()

            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{proxy.url}{PREFIX}lab?token={lab.token}")  # logs in through the hop
            tab = page.locator('.jp-SideBar li[data-id="nbmodal-sidebar"]')
            tab.wait_for(timeout=60_000)
            lab_page = page.url

            # A link in the notebook resolves the URL against the page: the Hub's origin.
            endpoint = urljoin(lab_page, url)
            page.goto(endpoint)
            expect(page.locator("body")).to_have_text('{"hello":"through the hub"}')
            assert page.evaluate(_ECHO, endpoint.replace("http", "ws", 1) + "echo") == "echo: hi"
            assert page.evaluate(_EVENTS, endpoint + "events") == ["tick 0", "tick 1", "tick 2"]

            page.goto(urljoin(lab_page, forwarded.url))
            expect(page.locator("body")).to_have_text("forwarded through the hub", timeout=30_000)

            # Where the Hub's public URL is known, the same URL is absolute.
            monkeypatch.setenv(web_access.BASE_URL_ENV, f"{proxy.url}{PREFIX}")
            assert api.get_web_url() == endpoint
            monkeypatch.delenv(web_access.BASE_URL_ENV)

            # The sidebar's Endpoints link, under the base URL, through the hop.
            page.goto(lab_page)
            tab.click()
            row = page.locator('#nbmodal-sidebar [data-endpoint="hubweb-api"]')
            expect(row).to_have_attribute("data-state", "serving", timeout=30_000)
            row.locator("a.nbmodal-endpoint-link").click()
            expect(page.frame_locator("iframe").last.locator("body")).to_contain_text("through the hub",
                                                                                    timeout=30_000)
            browser.close()
        queue.put("stop")
        assert call.get(timeout=60) == forwarded.url

    routed = proxy.requests
    assert f"WS {url}echo" in routed and f"GET {url}events" in routed and f"GET {forwarded.url}" in routed

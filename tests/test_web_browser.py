"""Web UIs from containers in a real browser (headless Chromium) through a real JupyterLab's proxy.

An App serves a FastAPI endpoint (JSON, a WebSocket echo, server-sent events) and TensorBoard over a
scalar a remote function logged; the browser, logged in to JupyterLab, reaches each through
``/nbmodal/proxy/``, follows the sidebar's Endpoints row into a JupyterLab tab, is refused without
Jupyter's login, and gets the 502 page naming the run once the App has stopped. A screenshot of
TensorBoard is kept in ``.nbmodal-test/artifacts/tensorboard.png``.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotations (WebSocket) at run
# time, from names imported inside the function.
import json
import os
import re

import pytest
from jupyterserver import free_port
from test_sidebar_browser import ARTIFACTS, CHROMIUM_ARGS, lab  # noqa: F401  (the JupyterLab fixture)

import nbmodal
from nbmodal._runtime import web_access

pytestmark = pytest.mark.browser

app = nbmodal.App("webui")
LOGS = "webui-logs"  # a volume, made by the test (at import no agent of the test session runs yet)
TENSORBOARD_PORT = free_port()


def demo_api(greeting: str, tick_s: float):
    """A FastAPI app (made in the container): JSON ``{"hello": greeting}`` at ``/``, three server-sent events
    ``tick i`` at ``/events`` (``tick_s`` apart), a WebSocket echo at ``/echo``."""
    import asyncio

    from fastapi import FastAPI, WebSocket
    from fastapi.responses import StreamingResponse

    web = FastAPI()

    @web.get("/")
    def hello():
        return {"hello": greeting}

    @web.get("/events")
    async def events():
        async def tick():
            for i in range(3):
                yield f"data: tick {i}\n\n"
                await asyncio.sleep(tick_s)

        return StreamingResponse(tick(), media_type="text/event-stream")

    @web.websocket("/echo")
    async def echo(socket: WebSocket):
        await socket.accept()
        while True:
            await socket.send_text("echo: " + await socket.receive_text())

    return web


@app.function()
@nbmodal.asgi_app()
def api():
    return demo_api("from a container", 0.2)


@app.function(volumes={"/logs": LOGS})
def log_scalars(steps: int) -> int:
    """A tiny 'training' that logs its loss as TensorBoard scalars (no TensorFlow or torch needed)."""
    import time

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter("/logs/run1")
    for step in range(steps):
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))])
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()
    return steps


@app.function(volumes={"/logs": LOGS})
@nbmodal.web_server(TENSORBOARD_PORT, startup_timeout=60)
def tensorboard():
    import subprocess
    import sys

    subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", "/logs", "--port", str(TENSORBOARD_PORT),
                      "--host", "127.0.0.1"])


def test_endpoints_open_in_the_notebooks_browser(lab):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    os.environ[web_access.BASE_URL_ENV] = lab.url
    try:
        nbmodal.Volume.from_name(LOGS, create_if_missing=True)
        assert log_scalars.remote(5) == 5  # the remote run TensorBoard shows
        with app.run():
            url = api.get_web_url()
            assert url == f"{lab.url}nbmodal/proxy/local/webui-api/"
            board = tensorboard.get_web_url()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
                _without_login_is_refused(browser, url)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{lab.url}lab?token={lab.token}")  # logs in: later pages carry Jupyter's cookie

                page.goto(url)
                assert json.loads(page.locator("body").inner_text()) == {"hello": "from a container"}
                assert page.evaluate(_ECHO, url.replace("http", "ws", 1) + "echo") == "echo: hi"
                assert page.evaluate(_EVENTS, url + "events") == ["tick 0", "tick 1", "tick 2"]

                page.goto(board)
                expect(page.get_by_text("loss").first).to_be_visible(timeout=60_000)
                points = page.evaluate("url => fetch(url).then(r => r.json())",
                                       board + "data/plugin/scalars/scalars?run=run1&tag=loss")
                assert [step for _, step, _ in points] == [0, 1, 2, 3, 4] and points[-1][2] == pytest.approx(0.2)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "tensorboard.png"))

                _sidebar_row_opens_a_tab(page, lab)
                browser.close()
            run_id = _serving_run(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            page.goto(f"{lab.url}lab?token={lab.token}")
            answer = page.goto(url)
            assert answer is not None and answer.status == 502
            expect(page.locator("body")).to_contain_text(f"run {run_id}")
            expect(page.locator("h1")).to_have_text("This endpoint has ended")
            browser.close()
    finally:
        os.environ.pop(web_access.BASE_URL_ENV, None)


_ECHO = """url => new Promise((resolve, reject) => {
  const socket = window.nbmodalSocket = new WebSocket(url);  // held: a collected socket never answers
  socket.onopen = () => socket.send('hi');
  socket.onmessage = event => { resolve(event.data); socket.close(); };
  socket.onerror = () => reject(new Error('websocket failed'));
  socket.onclose = event => reject(new Error(`websocket closed: ${event.code} ${event.reason}`));
  setTimeout(() => reject(new Error(`no echo in 20 s (state ${socket.readyState})`)), 20000);
})"""

_EVENTS = """url => new Promise((resolve, reject) => {
  const seen = [];
  const source = window.nbmodalEvents = new EventSource(url);
  source.onmessage = event => {
    seen.push(event.data);
    if (seen.length === 3) { source.close(); resolve(seen); }
  };
  source.onerror = () => { source.close(); reject(new Error('event stream failed after ' + seen.length)); };
  setTimeout(() => reject(new Error(`${seen.length} events in 20 s`)), 20000);
})"""


def _without_login_is_refused(browser, url: str) -> None:
    page = browser.new_page()
    page.goto(url)
    assert "/login" in page.url and "from a container" not in page.content()
    page.close()


def _sidebar_row_opens_a_tab(page, server) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}lab?token={server.token}")
    tab = page.locator('.jp-SideBar li[data-id="nbmodal-sidebar"]')
    tab.wait_for(timeout=60_000)
    tab.click()
    row = page.locator('#nbmodal-sidebar [data-endpoint="webui-api"]')
    expect(row).to_have_attribute("data-state", "serving", timeout=30_000)
    expect(row).to_contain_text("local")
    link = row.locator("a.nbmodal-endpoint-link")
    expect(link).to_have_attribute("href", re.compile(r"/nbmodal/proxy/local/webui-api/$"))
    page.locator("#nbmodal-sidebar").screenshot(path=str(ARTIFACTS / "endpoints.png"))
    link.click()
    frame = page.frame_locator("iframe").last
    expect(frame.locator("body")).to_contain_text("from a container", timeout=30_000)
    expect(page.locator(".lm-TabBar-tab", has_text="api")).to_be_visible()


def _serving_run(url: str) -> str:
    from nbmodal._runtime.connection import get_client
    from nbmodal_wire import pb

    name = url.rstrip("/").rsplit("/", 1)[1]
    tunnels = get_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
    return next(t.run_id for t in tunnels if t.name == name)

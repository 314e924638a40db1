"""The sidebar's Open terminal in a real JupyterLab (headless Chromium): a container row's button opens a
terminal tab running ``nbmodal shell`` in that container, whose shell answers there."""

from __future__ import annotations

import json
import re

import pytest
from test_sidebar_browser import CHROMIUM, CHROMIUM_ARGS, lab  # noqa: F401  (the JupyterLab fixture)

from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.local_agent import ensure_local_agent
from nbmodal_wire import pb

pytestmark = pytest.mark.browser


@pytest.fixture()
def readable_terminals(tmp_path):
    """Terminals in screen-reader mode: xterm then keeps its text in the page, where the test can read it
    (else it is only drawn on a canvas). In the ``lab`` fixture's config dir, before the server starts."""
    settings = tmp_path / "jupyter-config" / "lab" / "user-settings" / "@jupyterlab" / "terminal-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"screenReaderMode": True}))


@pytest.fixture()
def container_id():
    client = AgentClient(ensure_local_agent())  # the agent the Jupyter server's sidebar shows
    session = "sidebar-terminal"
    events = list(client.run(pb.RunRequest(kind=pb.CELL, label="setup", session=session, code="pass")))
    assert events[-1].finished.state == pb.SUCCEEDED
    yield next(c.container_id for c in client.list_containers() if c.session == session)
    client.stop_session(session)
    client.close()


def test_open_terminal_runs_a_shell_in_the_container(readable_terminals, lab, container_id):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{lab.url}lab?token={lab.token}")
        tab = page.locator('.jp-SideBar li[data-id="nbmodal-sidebar"]')
        tab.wait_for(timeout=60_000)
        tab.click()
        row = page.locator(f'#nbmodal-sidebar [data-container-id="{container_id}"]')
        button = row.locator("button.nbmodal-open-terminal")
        expect(button).to_be_enabled(timeout=30_000)
        button.click()
        terminal = page.locator(".jp-Terminal").last
        expect(terminal).to_be_visible(timeout=30_000)
        # The typed command line, then the shell inside the container answering a command.
        expect(terminal).to_contain_text(f"shell --host local {container_id}", timeout=30_000)
        terminal.click()
        page.keyboard.type("echo in-$NBMODAL_CONTAINER_ID-$((6*7))\n")
        expect(terminal).to_contain_text(re.compile(rf"in-{container_id}-42"), timeout=30_000)
        browser.close()

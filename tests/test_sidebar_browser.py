"""The sidebar in a real JupyterLab, driven in Debian's headless Chromium with Playwright.

A real kernel starts a ``%%remote --detach`` cell and writes a file into a volume; the sidebar shows the
run running, stops it, and browses the volume to the file. A screenshot of the panel is kept in
``.nbmodal-test/artifacts/sidebar.png``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from jupyterserver import jupyter_server
from kernels import kernel

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / ".nbmodal-test" / "artifacts"
# As the machine's notes say: without these, Chromium tries the (closed) network at every start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-system-deps.sh installs Debian's chromium")
    # The prebuilt extension, found the way an installed wheel's would be (share/jupyter/labextensions).
    data = tmp_path / "jupyter-data"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "nbmodal-labextension").symlink_to(ROOT / "nbmodal" / "labextension")
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))  # no user settings leak in
    root = tmp_path / "lab"
    root.mkdir()
    with jupyter_server(root, app="lab") as server:
        yield server


def test_the_sidebar_follows_stops_a_run_and_browses_a_volume(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with kernel(tmp_path) as k:
        assert k.execute("%volume create sidebar-ui")["error"] is None
        written = k.execute("%%remote volumes=sidebar-ui:/data\n"
                            "open('/data/hello.txt', 'w').write('hi from a cell')")
        assert written["error"] is None, written
        started = k.execute("%%remote --detach\nimport time\nprint('working', flush=True)\ntime.sleep(300)\n")
        assert started["error"] is None, started
        run_id = k.execute("print(_.run_id)")["stdout"].strip()
        assert re.fullmatch(r"r-[0-9a-f]{8}", run_id), run_id

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{lab.url}lab?token={lab.token}")
            tab = page.locator('.jp-SideBar li[data-id="nbmodal-sidebar"]')
            tab.wait_for(timeout=60_000)
            tab.click()
            panel = page.locator("#nbmodal-sidebar")
            expect(panel).to_be_visible()

            row = panel.locator(f'[data-run-id="{run_id}"]')
            expect(row.locator(".nbmodal-run-state")).to_have_text(re.compile("RUNNING", re.I), timeout=30_000)
            row.locator("button.nbmodal-stop").click()
            expect(row.locator(".nbmodal-run-state")).to_have_text(re.compile("CANCELLED", re.I), timeout=30_000)

            volume = panel.locator('[data-volume="sidebar-ui"]')
            volume.wait_for(timeout=30_000)
            # Its committed version at its home (issue 18): the upload was version 1.
            expect(volume.locator(".nbmodal-volume-copies")).to_have_attribute("data-version", "1")
            volume.click()
            expect(panel.locator('[data-path="/hello.txt"]')).to_be_visible(timeout=30_000)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(ARTIFACTS / "sidebar.png"))
            browser.close()
    assert (ARTIFACTS / "sidebar.png").stat().st_size > 1000

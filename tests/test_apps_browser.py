"""The sidebar's Apps section in a real JupyterLab (headless Chromium, Playwright): a deployed app with a
schedule shows its function, schedule, next run and last run, and its Stop button un-deploys it."""

from __future__ import annotations

import re

import pytest
from test_sidebar_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, lab  # noqa: F401  (the lab fixture)

pytestmark = pytest.mark.browser


def test_the_apps_section_shows_a_schedule_and_stops_the_app(lab):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    import nbmodal
    from nbmodal._runtime.connection import get_client
    from nbmodal.exceptions import NoEffectWarning
    from nbmodal_wire import pb

    app = nbmodal.App("sidebar-apps-source")

    with pytest.warns(NoEffectWarning, match="only deployed functions are scheduled"):
        @app.function(name="tick", schedule=nbmodal.Period(seconds=2))
        def tick():
            print("tick")

    app.deploy(name="sidebar-apps")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{lab.url}lab?token={lab.token}")
            tab = page.locator('.jp-SideBar li[data-id="nbmodal-sidebar"]')
            tab.wait_for(timeout=60_000)
            tab.click()
            panel = page.locator("#nbmodal-sidebar")
            row = panel.locator('[data-section="apps"] [data-app="sidebar-apps"]')
            expect(row).to_have_attribute("data-state", "deployed", timeout=60_000)
            function = row.locator('[data-function="tick"]')
            expect(function.locator(".nbmodal-app-schedule")).to_have_text("every 2s")
            expect(function.locator(".nbmodal-app-next")).to_have_text(re.compile(r"next in|due now"))
            expect(function.locator("button.nbmodal-link")).to_contain_text("last run", timeout=30_000)

            row.locator("button.nbmodal-stop").click()
            page.locator(".jp-Dialog-button.jp-mod-warn").click()  # the confirmation
            expect(row).to_have_attribute("data-state", "stopped", timeout=30_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(ARTIFACTS / "sidebar-apps.png"))
            browser.close()
    finally:
        if any(a.name == "sidebar-apps" and a.deployed for a in get_client().app_call(pb.APP_LIST).apps):
            get_client().app_call(pb.APP_STOP, "sidebar-apps")

"""The detached-run widget follows a run and stops it."""

from __future__ import annotations

import pytest

import nbmodal
from nbmodal._runtime.connection import get_client
from nbmodal.widgets import DetachedRun, RunWidget
from waiting import wait_for

pytestmark = pytest.mark.agent

app = nbmodal.App("widget")


@app.function()
def count(n):
    import time

    for i in range(n):
        print(f"tick {i}", flush=True)
        time.sleep(0.05)
    return n


def test_widget_shows_status_and_output_of_a_finished_run():
    call = count.spawn(3)
    assert call.get() == 3
    client = get_client()
    widget = RunWidget(client, client.get_run(call.object_id))
    widget._follow()  # what its background thread does
    assert "tick 0\ntick 1\ntick 2" in widget.output.value
    assert "succeeded" in widget.header.value and call.object_id in widget.header.value
    # the link the JupyterLab sidebar listens for, to reveal this run
    assert f"data-nbmodal-run='{call.object_id}' data-nbmodal-host='local'" in widget.header.value
    assert widget.stop_button.disabled


def test_stop_button_cancels_the_run():
    call = count.spawn(1000)
    client = get_client()
    widget = RunWidget(client, client.get_run(call.object_id))
    widget.follow_in_background()
    wait_for(lambda: "tick 0" in widget.output.value, 30, "the widget to show the run's first output")
    widget.stop_button.click()
    wait_for(lambda: "cancelled" in widget.header.value, 20, "the widget to show the run cancelled")
    assert "KeyboardInterrupt" in widget.output.value
    assert repr(DetachedRun(client, client.get_run(call.object_id))).startswith(f"<DetachedRun {call.object_id}")

"""The detached-run widget follows a run and stops it."""

from __future__ import annotations

import time

import nbmodal
from nbmodal._runtime.connection import get_client
from nbmodal.widgets import DetachedRun, RunWidget

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
    time.sleep(0.3)
    widget.stop_button.click()
    deadline = time.monotonic() + 20
    while "cancelled" not in widget.header.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "cancelled" in widget.header.value
    assert "KeyboardInterrupt" in widget.output.value
    assert repr(DetachedRun(client, client.get_run(call.object_id))).startswith(f"<DetachedRun {call.object_id}")

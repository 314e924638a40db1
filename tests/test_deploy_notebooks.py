"""The example notebooks 09 and 10 run top to bottom on the local agent: 09 deploys an app with a
schedule, 10 (another kernel, after 09's has ended) calls it by name, sees the schedule ran, and stops it."""

from __future__ import annotations

import pytest
from test_example_notebooks import execute, text

pytestmark = pytest.mark.agent


def test_deploy_in_one_notebook_and_call_by_name_from_another(tmp_path):
    deployed = execute("09-deploy-and-schedule.ipynb", tmp_path)
    said = text(deployed, "app.deploy()")
    assert "deployed app 'nbmodal-example-09' v" in said and "function heartbeat  (every 5s, next" in said, said
    assert "nbmodal-example-09" in text(deployed, "%nbmodal app list")
    beats = text(deployed, "heartbeats so far")
    assert int(beats.rsplit(":", 1)[1]) >= 2, beats
    assert "heartbeat recorded" in text(deployed, "%nbmodal app logs")

    called = execute("10-call-deployed-app.ipynb", tmp_path)
    assert "deployed on local" in str(called.nb.cells[1].outputs[0]["data"]["text/plain"])
    assert "{'words': 8, 'longest': 'functions'}" in text(called, "summarize.remote(")
    assert text(called, "for result in").splitlines() == [
        "{'words': 3, 'longest': 'a'}", "{'words': 6, 'longest': 'schedules'}", "{'words': 2, 'longest': 'from_name'}"]
    assert int(text(called, "heartbeats recorded").rsplit(":", 1)[1]) >= 2
    assert "has no function 'sumarize' (its functions: heartbeat, summarize)" in text(called, '"sumarize"')
    assert "app 'nbmodal-example-09' stopped on local" in text(called, "%nbmodal app stop")
    assert "stopped" in text(called, "%nbmodal app history")

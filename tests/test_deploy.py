"""Deployed apps and schedules on a real local agent: deploy, call by name from another kernel, schedules
with no client connected, an agent killed and restarted, redeploys, and `nbmodal app …`.

The module has a home (and so an agent) of its own: it kills that agent with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernels import kernel
from waiting import wait_for

pytestmark = pytest.mark.agent


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    from nbmodal._runtime import connection
    from nbmodal._runtime.local_agent import stop_local_agent
    from nbmodal.hosts import LOCAL

    home = tmp_path_factory.mktemp("deploy-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBMODAL_HOME", str(home))
        connection.forget(LOCAL)
        try:
            yield home
        finally:
            stop_local_agent(home / "agent")
            connection.forget(LOCAL)


def _cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBMODAL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _client():
    from nbmodal._runtime.connection import get_client

    return get_client()


def _runs_of(label: str):
    from nbmodal_wire import pb

    return [r for r in _client().list_runs() if r.label == label and r.kind == pb.FUNCTION]


def _succeeded(label: str, since: float = 0.0) -> int:
    from nbmodal_wire import pb

    return sum(1 for r in _runs_of(label) if r.state == pb.SUCCEEDED and r.created >= since)


def _program(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_deploy_in_one_kernel_and_call_by_name_from_another(home, tmp_path):
    with kernel(tmp_path) as first:
        deployed = first.execute(textwrap.dedent("""
            import nbmodal
            app = nbmodal.App("kernels-demo")

            @app.function()
            def square(x):
                return x * x

            @app.cls()
            class Model:
                size: int = nbmodal.parameter(default=2)

                @nbmodal.method()
                def scale(self, x):
                    return x * self.size

            app.deploy()
        """))
        assert deployed["error"] is None, deployed
        assert "deployed app 'kernels-demo' v1 on local" in deployed["stderr"] + deployed["stdout"], deployed
    # The deploying kernel is gone; a second one calls by name.
    with kernel(tmp_path) as second:
        called = second.execute(textwrap.dedent("""
            import nbmodal
            square = nbmodal.Function.from_name("kernels-demo", "square")
            Model = nbmodal.Cls.from_name("kernels-demo", "Model")
            print(square.remote(7), list(square.map([1, 2, 3])), square.spawn(5).get())
            print(Model(size=3).scale.remote(5), Model().scale.remote(5),
                  Model.with_options(timeout=60)(size=4).scale.remote(2))
            try:
                nbmodal.Function.from_name("kernels-demo", "cube")
            except nbmodal.exception.NotFoundError as exc:
                print("error:", exc)
        """))
        assert called["error"] is None, called
        lines = called["stdout"].splitlines()
        assert lines[0] == "49 [1, 4, 9] 25" and lines[1] == "15 10 8", called
        assert "has no function 'cube' (its functions: square)" in lines[2], called
        listed = second.execute("%nbmodal app list")
        assert "kernels-demo" in listed["stdout"] and "square, Model" in listed["stdout"], listed


def test_a_schedule_runs_with_no_client_and_survives_an_agent_kill(home, tmp_path):
    program = _program(tmp_path, "ticker", """
        import nbmodal
        app = nbmodal.App("ticker")

        @app.function(schedule=nbmodal.Period(seconds=2), min_containers=1)
        def tick():
            print("tick")
            return "ok"
    """)
    deployed = _cli(home, "deploy", str(program))
    assert deployed.returncode == 0, deployed.stderr
    assert "function tick  (every 2s, next" in deployed.stdout, deployed.stdout
    assert "only deployed functions" not in deployed.stderr  # nbmodal deploy: no warning about schedules
    # No kernel, no client: the agent runs it on its own, every 2 s.
    wait_for(lambda: _succeeded("ticker.tick() scheduled") >= 3, 60, "three scheduled runs of tick")
    # min_containers=1 from the deploy on: a warm container of its spec stands.
    wait_for(lambda: any(c.spec.min_containers == 1 for c in _client().list_containers()), 30,
             "tick's min_containers pool")

    agent_json = home / "agent" / "agent.json"
    pid = int(__import__("json").loads(agent_json.read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
             .lower(), 15, "the killed agent to be gone")
    restarted = time.time()
    listed = _cli(home, "app", "list")  # starts a new agent, which resumes the app
    assert listed.returncode == 0, listed.stderr
    assert "ticker" in listed.stdout and "deployed" in listed.stdout and "every 2s" in listed.stdout, listed.stdout
    wait_for(lambda: _succeeded("ticker.tick() scheduled", since=restarted) >= 1, 60,
             "a scheduled run after the restart")
    import nbmodal

    assert nbmodal.Function.from_name("ticker", "tick").remote() == "ok"  # callable by name after the restart
    logs = _cli(home, "app", "logs", "ticker")
    assert "agent started: resumed v1" in logs.stdout and "] tick" in logs.stdout, logs.stdout
    # -f follows: the lines of runs that come after it started arrive while it runs.
    ticks_before = logs.stdout.count("] tick")
    follower = subprocess.Popen([sys.executable, "-m", "nbmodal.cli", "app", "logs", "ticker", "-f"],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "NBMODAL_HOME": str(home)})
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(follower.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_for(lambda: "".join(followed).count("] tick") > ticks_before, 30, "app logs -f to show a new run")
    finally:
        follower.terminate()
        follower.wait(10)
    stopped = _cli(home, "app", "stop", "ticker")
    assert stopped.returncode == 0 and "app 'ticker' stopped on local (v1)" in stopped.stdout, stopped.stderr
    history = _cli(home, "app", "history", "ticker")
    assert [line.split()[:2] for line in history.stdout.splitlines()[1:]] == [["v1", "deployed"], ["v1", "stopped"]]
    listed = _cli(home, "app", "list")
    assert "stopped" in listed.stdout, listed.stdout


def test_a_run_still_going_is_not_started_twice(home, tmp_path):
    program = _program(tmp_path, "slow", """
        import time
        import nbmodal
        app = nbmodal.App("slow")

        @app.function(schedule=nbmodal.Period(seconds=1))
        def crawl():
            time.sleep(2.5)
    """)
    assert _cli(home, "deploy", str(program)).returncode == 0
    wait_for(lambda: "skipped: the previous one" in _cli(home, "app", "logs", "slow").stdout, 60,
             "a skipped scheduled run in the app's log")
    wait_for(lambda: _succeeded("slow.crawl() scheduled") >= 2, 60, "two finished runs of crawl")
    assert _cli(home, "app", "stop", "slow").returncode == 0
    runs = sorted((r for r in _runs_of("slow.crawl() scheduled") if r.finished), key=lambda r: r.started)
    for earlier, later in zip(runs, runs[1:]):
        assert later.started >= earlier.finished, "two scheduled runs of crawl overlapped"
    agent_log = (home / "agent" / "agent.log").read_text()
    assert "scheduled run of slow.crawl skipped" in agent_log


def test_redeploy_replaces_the_version_and_calls_in_flight_finish_on_the_old_one(home):
    import nbmodal

    gate = nbmodal.Dict.from_name("deploy-gate", create_if_missing=True)
    # Deployed under another name than the Apps here have: from_name finds the deployed one, not these.
    app = nbmodal.App("versions-first")

    @app.function(name="which")
    def which_v1():
        import time

        import nbmodal as nm

        while not nm.Dict.from_name("deploy-gate").get("open"):
            time.sleep(0.05)
        return "v1"

    app.deploy(name="versions")
    in_flight = nbmodal.Function.from_name("versions", "which").spawn()
    wait_for(lambda: any(r.state == 2 for r in _runs_of("versions.which()")), 30, "the v1 call running")

    again = nbmodal.App("versions-second")

    @again.function(name="which")
    def which_v2():
        return "v2"

    again.deploy(name="versions")
    assert nbmodal.Function.from_name("versions", "which").remote() == "v2"
    gate["open"] = True
    assert in_flight.get(timeout=60) == "v1"  # started on v1, finished on v1
    history = [(h.version, h.event) for h in _client().app_call(__import__("nbmodal_wire").pb.APP_HISTORY,
                                                                 "versions").history]
    assert history == [("v1", "deployed"), ("v2", "deployed")]


def test_bad_names_say_what_exists(home):
    import nbmodal

    source = nbmodal.App("bad-names-source")

    @source.function(name="present")
    def present():
        return 1

    @source.function(name="caller")
    def caller():
        import nbmodal as nm

        return nm.Function.from_name("bad-names", "present").remote() + 1  # by name, from inside a container

    source.deploy(name="bad-names")
    assert nbmodal.Function.from_name("bad-names", "caller").remote() == 2
    assert nbmodal.Function.from_name("bad-names", "present").with_options(timeout=30, cpu=1).remote() == 1
    with pytest.raises(nbmodal.exception.NotFoundError, match=r"no app 'nowhere' is deployed on local "
                                                               r"\(deployed apps: .*bad-names \(local\)"):
        nbmodal.Function.from_name("nowhere", "f")
    with pytest.raises(nbmodal.exception.NotFoundError,
                       match="has no function 'absent' \\(its functions: present, caller\\)"):
        nbmodal.Function.from_name("bad-names", "absent")
    with pytest.raises(nbmodal.exception.NotFoundError, match="has no class 'Gone' \\(its classes: none\\)"):
        nbmodal.Cls.from_name("bad-names", "Gone")
    missing = _cli(home, "app", "logs", "nowhere")
    assert missing.returncode != 0 and "no app 'nowhere' was ever deployed here (apps: " in missing.stderr
    assert _cli(home, "app", "stop", "bad-names").returncode == 0
    stopped_twice = _cli(home, "app", "stop", "bad-names")
    assert stopped_twice.returncode != 0 and "is not deployed (it was stopped before" in stopped_twice.stderr
    with pytest.raises(nbmodal.exception.NotFoundError, match="no app 'bad-names' is deployed"):
        nbmodal.Function.from_name("bad-names", "present")
    with pytest.raises(nbmodal.exception.InvalidError, match="needs a name to be deployed"):
        nbmodal.App().deploy()
    with pytest.raises(nbmodal.exception.InvalidError, match="has no functions or classes"):
        nbmodal.App("empty").deploy()

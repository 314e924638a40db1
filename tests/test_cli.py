"""The nbmodal command: the README's quickstart, agent management, runs and logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.agent

REPO = Path(__file__).resolve().parent.parent
NBMODAL = [sys.executable, "-m", "nbmodal.cli"]


def nbmodal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NBMODAL, *args], capture_output=True, text=True, timeout=timeout)


def test_quickstart_notebook_runs_headless_and_is_saved_with_outputs(tmp_path):
    output = tmp_path / "quickstart.ipynb"
    done = nbmodal("run", str(REPO / "notebooks" / "01-quickstart.ipynb"), "-o", str(output))
    assert done.returncode == 0, done.stderr
    # Remote output streamed to the terminal as it ran.
    assert "step 3/3" in done.stdout and "caught ZeroDivisionError raised remotely" in done.stdout
    nb = nbformat.read(output, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in code]
    remote = code[2]
    assert "running in container process" in text[2] and "step 1/3\nstep 2/3\nstep 3/3\n" in text[2]
    assert remote.outputs[-1].output_type == "execute_result"
    assert remote.outputs[-1].data["text/plain"] == "{'mean': 3.0, 'std': 2.0}"
    assert text[3] == "{'mean': 3.0, 'std': 2.0}\n(100000,) 6.0\n"
    assert "ratio.remote(6, 3) = 2.0" in text[4] and "Cell In[" in text[4] and "return a / b" in text[4]
    assert "after 2 update(s): [1. 1. 1.]" in text[7]
    assert "demo" in text[8] and "session 'demo' stopped" in text[9]
    assert "-> 2.5" in text[10]


def test_failing_notebook_exits_nonzero_and_still_saves(tmp_path):
    notebook = tmp_path / "fails.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext nbmodal"),
        nbformat.v4.new_code_cell("%%remote\nprint('before')\n1 / 0"),
        nbformat.v4.new_code_cell("print('never')"),
    ]), notebook)
    done = nbmodal("run", str(notebook))
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr and "never" not in done.stdout
    saved = nbformat.read(tmp_path / "fails.executed.ipynb", as_version=4)
    assert saved.cells[1].outputs[0].text == "before\n"


def test_agent_verbs_and_run_listing(tmp_path):
    assert nbmodal("agent", "start").returncode == 0
    status = nbmodal("agent", "status")
    assert status.returncode == 0 and "running: pid" in status.stdout
    import nbmodal as api

    @api.App("cli").function()
    def shout(word):
        print(word.upper())
        return len(word)

    call = shout.spawn("hello")
    assert call.get() == 5
    runs = nbmodal("runs")
    assert call.object_id in runs.stdout and "SUCCEEDED" in runs.stdout
    logs = nbmodal("logs", call.object_id)
    assert logs.stdout == "HELLO\n"
    attached = nbmodal("attach", call.object_id)
    assert attached.stdout == "HELLO\n5\n"
    missing = nbmodal("logs", "r-00000000")
    assert missing.returncode == 1 and "no run 'r-00000000'" in missing.stderr
    unknown = nbmodal("stop", "no-such-session")
    assert unknown.returncode == 1 and "no run or session named 'no-such-session'" in unknown.stderr
    stopped = nbmodal("agent", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert "no agent running" in nbmodal("agent", "status").stdout


def test_magic_verbs_take_the_commands_options(capsys):
    """%nbmodal runs/sessions honour --host and -n, and %nbmodal logs -f follows, as the command does."""
    from IPython.testing.globalipapp import get_ipython

    import nbmodal as api
    from nbmodal.hosts import HostError

    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbmodal")
    try:
        @api.App("cli-magic").function()
        def tick(n):
            import time

            for i in range(n):
                print(f"tick {i}", flush=True)
                time.sleep(0.3)
            return n

        first = tick.spawn(1)
        assert first.get() == 1
        second = tick.spawn(4)
        capsys.readouterr()
        shell.run_line_magic("nbmodal", f"logs {second.object_id} -f")  # returns when the run ends
        assert capsys.readouterr().out == "tick 0\ntick 1\ntick 2\ntick 3\n"

        shell.run_line_magic("nbmodal", "runs --host local -n 1")
        listing = capsys.readouterr().out.splitlines()
        assert len(listing) == 2 and listing[1].startswith(second.object_id)
        shell.run_line_magic("nbmodal", "runs --host local -n 2")
        assert first.object_id in capsys.readouterr().out
        shell.run_line_magic("nbmodal", "sessions --host local")
        sessions = capsys.readouterr().out
        assert sessions == "no sessions\n" or sessions.startswith("SESSION")
        for verb in ("runs", "sessions"):
            with pytest.raises(HostError, match="no host named 'nowhere'"):
                shell.run_line_magic("nbmodal", f"{verb} --host nowhere")

        limited = nbmodal("runs", "--host", "local", "-n", "1")
        assert limited.returncode == 0 and len(limited.stdout.splitlines()) == 2
        assert limited.stdout.splitlines()[1].startswith(second.object_id)
    finally:
        shell.run_line_magic("unload_ext", "nbmodal")

"""Detached runs outlive their kernel and can be attached from another."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from kernels import kernel

pytestmark = pytest.mark.agent


def test_detached_run_survives_kernel_restart_and_attach_replays_it(tmp_path):
    go = tmp_path / "go"
    with kernel(tmp_path) as k:
        k.execute("factor = 7")
        result = k.execute(textwrap.dedent(f"""
            %%remote --detach
            import os, time
            print("step 1", flush=True)
            while not os.path.exists({str(go)!r}):
                time.sleep(0.02)
            print("step 2", flush=True)
            answer = 6 * factor
        """))
        assert result["error"] is None, result
        # A widget is shown; the handle (Out[]) carries the run id.
        assert any("application/vnd.jupyter.widget-view+json" in d for d in result["data"]), result
        run_id = k.execute("print(_.run_id)")["stdout"].strip()
        assert re.fullmatch(r"r-[0-9a-f]{8}", run_id)
        logs = k.execute(f"import time; time.sleep(0.5)\n%nbmodal logs {run_id}")
        assert "step 1" in logs["stdout"] and "step 2" not in logs["stdout"]
    # The first kernel is gone; the run goes on.
    go.write_text("")
    with kernel(tmp_path) as k:
        attached = k.execute(f"%nbmodal attach {run_id}")
        assert attached["error"] is None, attached
        assert attached["stdout"] == "step 1\nstep 2\n"  # replayed from the start
        assert k.execute("print(answer)")["stdout"] == "42\n"
        assert run_id in k.execute("%nbmodal runs")["stdout"]


def test_detached_run_can_be_stopped(tmp_path):
    with kernel(tmp_path) as k:
        k.execute("%%remote --detach\nimport time\nwhile True:\n    time.sleep(0.05)")
        run_id = k.execute("print(_.run_id)")["stdout"].strip()
        stopped = k.execute(f"%nbmodal stop {run_id}")
        assert f"run {run_id}: stop requested" in stopped["stdout"]
        attached = k.execute(f"%nbmodal attach {run_id}")
        assert attached["error"]["ename"] == "KeyboardInterrupt"


def test_terminal_ipython_without_widgets(tmp_path):
    """A plain IPython terminal: output streams, detached runs print how to follow them."""
    script = tmp_path / "session.ipy"
    # A .ipy script can't hold a cell magic; run_cell_magic is what a %%remote cell calls.
    script.write_text(textwrap.dedent("""
        %load_ext nbmodal
        x = 20
        get_ipython().run_cell_magic("remote", "", "print('remote says', x + 1)\\ny = x * 2")
        print("local y", y)
        run = get_ipython().run_cell_magic("remote", "--detach", "print(1)")
        run._ipython_display_()
    """))
    out = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", str(script)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "remote says 21" in out.stdout and "local y 40" in out.stdout
    assert "started in the background" in out.stdout and "%nbmodal attach r-" in out.stdout


def test_characters_split_between_writes_arrive_whole_in_every_view(tmp_path):
    """The bytes of one character written in two pieces (two pipe reads, two events) show as that character."""
    from nbmodal.server.dashboard import Dashboard

    with kernel(tmp_path) as k:
        k.execute(textwrap.dedent("""
            %%remote --detach
            import os, time
            data = "日本 😀\\n".encode()
            for piece in (data[:2], data[2:8], data[8:]):  # each cut inside a character
                os.write(1, piece)
                time.sleep(0.3)
        """))
        run_id = k.execute("print(_.run_id)")["stdout"].strip()
        attached = k.execute(f"%nbmodal attach {run_id}")
        assert attached["error"] is None, attached
        assert attached["stdout"] == "日本 😀\n"
        assert k.execute(f"%nbmodal logs {run_id}")["stdout"] == "日本 😀\n"
        page = Dashboard().run_log("local", run_id)
        assert page["text"] == "日本 😀\n" and page["done"]
        client = Dashboard.client("local")
        chunks = [e.output.data for e in client.attach(run_id, follow=False) if e.WhichOneof("kind") == "output"]
        assert len(chunks) > 1 and b"".join(chunks) == "日本 😀\n".encode()  # the pieces did arrive apart

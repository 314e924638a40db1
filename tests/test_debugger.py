"""breakpoint() in remote code is debugged in the notebook: its prompt is the kernel's input box.

A real kernel runs the cells; the test answers its stdin requests as a user would. A detached run
at a breakpoint waits (WAITING_FOR_DEBUGGER) until ``nbmodal attach`` answers it from a terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from debugging import run_answering
from kernels import kernel
from waiting import wait_for

from nbmodal_wire import pb

pytestmark = pytest.mark.agent


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    with kernel(tmp_path_factory.mktemp("debugger")) as k:
        yield k


def test_pdb_session_in_a_remote_cell_prints_steps_and_continues(k):
    out = run_answering(k, textwrap.dedent("""
        %%remote
        x = 41
        print("before")
        breakpoint()
        y = x + 1
        print("after", y)
        done = True
    """), ["p x", "n", "p y", "c"])
    assert out["error"] is None, out
    assert out["prompts"] == ["(Pdb) "] * 4
    stdout = out["stdout"]
    # pdb's own output arrives in order with the cell's: where it stopped, the values asked for, then the rest.
    assert stdout.index("before") < stdout.index("-> y = x + 1") < stdout.index("41\n")
    assert stdout.index("41\n") < stdout.index("-> print(\"after\", y)") < stdout.index("42\n")
    assert stdout.endswith("after 42\n")
    assert k.execute("print(y)")["stdout"] == "42\n"  # the cell's names came back as usual


def test_q_stops_the_run_with_bdbquit(k):
    out = run_answering(k, "%%remote\nz = 1\nbreakpoint()\nz = 2\nprint('never')", ["q"])
    # As with a local cell, IPython stops the cell at the BdbQuit without a traceback; nbmodal says why.
    assert "never" not in out["stdout"]
    assert "the debugger was quit (q or end of input), so the run stopped at its breakpoint" in out["stderr"], out
    assert k.execute("print(z)")["stdout"] == "1\n"  # what ran before the breakpoint stands, as locally
    caught = run_answering(k, textwrap.dedent("""
        import bdb
        try:
            get_ipython().run_cell_magic("remote", "", "breakpoint()\\nw = 1")
        except bdb.BdbQuit as exc:
            print("raised", type(exc).__name__, exc)
    """), ["q"])
    assert "raised BdbQuit the debugger was quit (q or end of input)" in caught["stdout"], caught


def test_breakpoint_in_a_function_and_in_a_class_method(k):
    k.execute(textwrap.dedent("""
        import nbmodal
        app = nbmodal.App("debugging")

        @app.function()
        def double(a):
            import pdb; pdb.set_trace()
            return a * 2

        @app.cls()
        class Model:
            @nbmodal.method()
            def predict(self, a):
                scale = 3
                breakpoint()
                return a * scale
    """))
    out = run_answering(k, "print('remote:', double.remote(21))", ["p a", "c"])
    assert out["error"] is None, out
    assert "21\n" in out["stdout"] and "remote: 42" in out["stdout"]
    out = run_answering(k, "print('method:', Model().predict.remote(5))", ["p scale * a", "c"])
    assert out["error"] is None, out
    assert "15\n" in out["stdout"] and "method: 15" in out["stdout"]


def test_a_map_debugs_one_input_at_a_time_and_names_it(k):
    k.execute(textwrap.dedent("""
        @app.function(max_containers=4)
        def square(n):
            if n in (2, 3):  # two inputs in flight at once stop at the breakpoint
                breakpoint()
            return n * n
    """))
    out = run_answering(k, "print(list(square.map(range(6))))", ["p n * 10", "c", "p n * 10", "c"])
    assert out["error"] is None, out
    first, second = out["prompts"][0], out["prompts"][2]
    # One session after the other, not interleaved: each keeps the prompt until it continues.
    assert out["prompts"] == [first, first, second, second], out["prompts"]
    assert {first, second} == {"[input 2] (Pdb) ", "[input 3] (Pdb) "}
    assert "20\n" in out["stdout"] and "30\n" in out["stdout"] and "[0, 1, 4, 9, 16, 25]" in out["stdout"]


def test_input_in_remote_code_is_answered_in_the_notebook(k):
    out = run_answering(k, "%%remote\nname = input('your name: ')\nprint('hello', name)", ["Ada"])
    assert out["prompts"] == ["your name: "]
    assert "hello Ada" in out["stdout"] and out["error"] is None, out


def test_a_detached_run_waits_for_a_debugger_until_attached_from_a_terminal(k, tmp_path):
    go = tmp_path / "go"
    k.execute(textwrap.dedent(f"""
        %%remote --detach
        import os, time
        secret = 6 * 7
        breakpoint()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.02)
        print("done", secret)
    """))
    run_id = k.execute("print(_.run_id)")["stdout"].strip()
    cli = [sys.executable, "-m", "nbmodal.cli"]
    env = dict(os.environ)

    def waiting() -> bool:
        listed = subprocess.run([*cli, "runs"], capture_output=True, text=True, env=env, timeout=60).stdout
        return any(run_id in line and "WAITING_FOR_DEBUGGER" in line for line in listed.splitlines())

    wait_for(waiting, 60, "the detached run to wait for a debugger in `nbmodal runs`")
    from nbmodal.server.dashboard import Dashboard, run_row

    # The sidebar's run row says so, and its log view shows where it stopped, with the prompt last.
    client = Dashboard.client("local")
    assert run_row("local", client.get_run(run_id))["state"] == "WAITING_FOR_DEBUGGER"
    page = Dashboard().run_log("local", run_id)
    assert page["text"].endswith("-> while not os.path.exists(%r):\n(Pdb) " % str(go)) and not page["done"], page
    attach = subprocess.Popen([*cli, "attach", run_id], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    assert attach.stdin is not None
    attach.stdin.write("p secret\nc\n")  # typed on the terminal
    attach.stdin.flush()
    # Answered: the run goes on (RUNNING) and waits for the file.
    wait_for(lambda: client.get_run(run_id).state == pb.RUNNING, 60, "the run to be RUNNING again once answered")
    go.write_text("")
    stdout, stderr = attach.communicate(timeout=60)
    assert attach.returncode == 0, stderr
    assert "(Pdb) 42" in stdout and "done 42" in stdout


def test_a_run_waiting_for_a_debugger_ends_at_its_timeout(k):
    k.execute("%%remote --detach timeout=2\nbreakpoint()\nnever = True")
    run_id = k.execute("print(_.run_id)")["stdout"].strip()
    from nbmodal.server.dashboard import Dashboard

    client = Dashboard.client("local")
    wait_for(lambda: client.get_run(run_id).state == pb.WAITING_FOR_DEBUGGER, 30, "the run to wait for a debugger")
    info = wait_for(lambda: (i := client.get_run(run_id)).state == pb.TIMED_OUT and i, 30, "the timeout to end it")
    assert info.input_request_seq == 0 and "timeout of 2 s" in info.error


def test_attach_from_the_notebook_answers_in_its_input_box(k):
    k.execute("%%remote --detach\nv = 'from the run'\nbreakpoint()\nw = v.upper()")
    run_id = k.execute("print(_.run_id)")["stdout"].strip()
    from nbmodal.server.dashboard import Dashboard

    client = Dashboard.client("local")
    wait_for(lambda: client.get_run(run_id).state == pb.WAITING_FOR_DEBUGGER, 30, "the run to wait for a debugger")
    out = run_answering(k, f"%nbmodal attach {run_id}", ["p v", "c"])
    assert out["error"] is None and out["prompts"] == ["(Pdb) "] * 2, out
    assert "'from the run'" in out["stdout"]
    assert k.execute("print(w)")["stdout"] == "FROM THE RUN\n"  # attach loaded its results


def test_stepping_off_the_end_of_the_cell_ends_the_session(k):
    out = run_answering(k, "%%remote\na = 1\nbreakpoint()\nb = a + 1", ["n", "n"])
    assert out["error"] is None and out["prompts"] == ["(Pdb) "] * 2, out
    assert "--Return--" in out["stdout"] and "remote_agent" not in out["stdout"]  # never in the worker's code
    assert k.execute("print(b)")["stdout"] == "2\n"


def test_in_a_terminal_ipython_the_terminal_answers(tmp_path):
    script = tmp_path / "session.ipy"
    script.write_text(textwrap.dedent("""
        %load_ext nbmodal
        x = 20
        get_ipython().run_cell_magic("remote", "", "y = x + 1\\nbreakpoint()\\nz = y * 2")
        print("local z", z)
    """))
    done = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", str(script)],
                          input="p y\nc\n", capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "-> z = y * 2\n(Pdb) 21\n(Pdb) local z 42\n" in done.stdout, done.stdout


def test_a_spawned_call_waits_and_get_answers_its_debugger(k):
    k.execute(textwrap.dedent("""
        @app.function()
        def triple(a):
            breakpoint()
            return a * 3
    """))
    run_id = k.execute("call = triple.spawn(7)\nprint(call.object_id)")["stdout"].strip()
    from nbmodal.server.dashboard import Dashboard

    client = Dashboard.client("local")
    wait_for(lambda: client.get_run(run_id).state == pb.WAITING_FOR_DEBUGGER, 30, "the spawned call to wait")
    out = run_answering(k, "print('got', call.get())", ["p a", "c"])
    assert out["error"] is None and "7\n" in out["stdout"] and "got 21" in out["stdout"], out

"""!cmd, x = !cmd and %%bash in a %%remote cell run in the container, as IPython users expect."""

from __future__ import annotations

import re
import textwrap

import pytest
from kernels import kernel

pytestmark = pytest.mark.agent


def test_shell_lines_run_in_the_container(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.csv", "b.csv", "notes.txt"):
        (data / name).write_text(name)
    with kernel(tmp_path) as k:
        k.execute(f"data_dir = {str(data)!r}")
        out = k.execute(textwrap.dedent("""
            %%remote
            print("first")
            !echo in container $NBMODAL_CONTAINER_ID
            !echo listing {data_dir}
            files = !ls {data_dir}
            csvs = files.grep("csv$")
            suffix = ".txt"
            notes = !ls {data_dir} | grep -F {suffix}
            !exit 4
            status = _exit_code
            print("last")
        """))
        assert out["error"] is None, out
        # In order with the cell's prints; $NAME that isn't a Python variable is the shell's (IPython's rule).
        expected = rf"first\nin container c-\d+-\d+\nlisting {re.escape(str(data))}\nlast\n"
        assert re.fullmatch(expected, out["stdout"]), out
        shown = k.execute("print(files, type(files).__name__, csvs, notes, status, files.s)")["stdout"]
        assert shown == ("['a.csv', 'b.csv', 'notes.txt'] SList ['a.csv', 'b.csv'] ['notes.txt'] 4 "
                         "a.csv b.csv notes.txt\n")


def test_a_bash_cell_and_its_failure(tmp_path):
    with kernel(tmp_path) as k:
        out = k.execute("%%remote\n%%bash\nfor i in 1 2; do echo line $i; done\necho to stderr >&2")
        assert out["error"] is None, out
        assert out["stdout"] == "line 1\nline 2\n" and out["stderr"] == "to stderr\n"
        failed = k.execute("%%remote\n%%bash\necho before\nexit 3")
        assert failed["error"]["ename"] == "CalledProcessError" and "exit status 3" in failed["error"]["evalue"]
        refused = k.execute("%%remote\nx = 1\n%cd /tmp")
        assert refused["error"]["ename"] == "InvalidError" and "%cd" in refused["error"]["evalue"]

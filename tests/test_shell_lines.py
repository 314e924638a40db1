"""Shell lines of %%remote cells, in process: the notebook's rewriting, and the container's filling in."""

from __future__ import annotations

import pickle
import sys

import pytest

from nbmodal.exceptions import InvalidError
from nbmodal.shell_escapes import referenced_names, transform_cell
from nbmodal_wire.cellcode import names_read
from nbmodal_wire.shell_lines import SList
from remote_agent.worker import shell_lines

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("cell", "expected"), [
    ("!ls /data", "_nbmodal_shell.system('ls /data')"),
    ("files = !ls {path}", "files = _nbmodal_shell.getoutput('ls {path}', lambda: (path,))"),
    ("a, b = !echo $x {y + 1}", "a, b = _nbmodal_shell.getoutput('echo $x {y + 1}', lambda: (x, y,))"),
    ("!!date", "_nbmodal_shell.getoutput('date')"),
    ("for f in fs:\n    !echo {f}", "for f in fs:\n    _nbmodal_shell.system('echo {f}', lambda: (f,))"),
    ("!awk '{print $1}' t.txt", "_nbmodal_shell.system(\"awk '{print $1}' t.txt\")"),  # shell braces: no names
    ("x = 1\ny = x", "x = 1\ny = x"),  # nothing to rewrite: the cell as it was
])
def test_shell_lines_become_calls_the_container_runs(cell, expected):
    assert transform_cell(cell) == expected


def test_lines_inside_strings_and_brackets_are_left_alone():
    cell = 's = """\n!not a command\n"""\nt = (1,\n!2)\n'
    assert transform_cell(cell) == cell


def test_line_numbers_stay_as_in_the_cell():
    rewritten = transform_cell("!echo a \\\n  b\nx = 1")
    assert rewritten.split("\n") == ["_nbmodal_shell.system('echo a b')", "", "x = 1"]
    bash = transform_cell("%%bash\necho one\necho two")
    assert bash.count("\n") == 2 and bash.startswith("_nbmodal_shell.cell('bash', 'echo one\\necho two\\n')")


def test_cell_magics_and_line_magics():
    assert transform_cell("%%sh\nls").startswith("_nbmodal_shell.cell('sh', 'ls\\n')")
    assert transform_cell("%%script python3 -u\nprint(1)").startswith("_nbmodal_shell.cell('python3 -u',")
    with pytest.raises(InvalidError, match="not '%%time'"):
        transform_cell("%%time\nx = 1")
    with pytest.raises(InvalidError, match="line 2 .* line magic %cd"):
        transform_cell("x = 1\n%cd /tmp")


def test_the_names_a_command_mentions_are_sent_with_the_cell():
    assert referenced_names("cp {src} $dst {len(items)}") == ["src", "dst", "len", "items"]
    assert referenced_names("echo {unclosed") == []  # not a format string: run as written
    assert names_read(transform_cell("!ls {data_dir}")) == ["_nbmodal_shell", "data_dir"]


def test_the_container_fills_in_fields_from_the_calling_code():
    path, n = "/data", 3
    frame = sys._getframe()
    assert shell_lines.expand("ls {path} -n $n {n * 2}", frame) == "ls /data -n 3 6"
    assert shell_lines.expand("echo $$HOME", frame) == "echo $HOME"
    # A field that isn't Python (shell syntax), or a name that doesn't exist: the line runs as written.
    assert shell_lines.expand("awk '{print $1}' {path}", frame) == "awk '{print $1}' {path}"
    assert shell_lines.expand("echo ${HOME}", frame) == "echo ${HOME}"
    assert path and n


def test_getoutput_and_system_run_in_the_shell(capfd):
    where = "x y"
    lines = shell_lines.getoutput("printf '%s\\n' {where} a-line; echo oops >&2")
    assert isinstance(lines, SList) and lines == ["x", "y", "a-line", "oops"]
    shell_lines.system("echo streamed; exit 3")
    assert capfd.readouterr().out == "streamed\n"
    assert globals()["_exit_code"] == 3  # as IPython's _exit_code
    with pytest.raises(Exception, match="exit status 2"):
        shell_lines.cell("bash", "echo in bash\nexit 2\n")
    assert where


def test_slist_has_ipythons_shortcuts():
    lines = SList(["a.txt 10", "b.csv 20", "c.txt 30"])
    assert lines.s == "a.txt 10 b.csv 20 c.txt 30" and lines.n.count("\n") == 2
    assert lines.grep("txt") == ["a.txt 10", "c.txt 30"] and lines.grep("txt", prune=True) == ["b.csv 20"]
    assert lines.fields(0) == ["a.txt", "b.csv", "c.txt"] and lines.fields(1, 0)[0] == "10 a.txt"
    assert type(pickle.loads(pickle.dumps(lines))) is SList and lines.l == list(lines)

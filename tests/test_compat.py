"""Modal code runs unchanged: each program in tests/compat/ (written as Modal's docs write Modal code, with
``import nbmodal as modal``) runs with ``nbmodal run file.py`` on the embedded local agent and checks its
own results; and ``nbmodal run`` itself: options from the entrypoint's signature, ``file.py::NAME``,
exit codes and the remote traceback of a failure.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.agent

COMPAT = Path(__file__).resolve().parent / "compat"
PROGRAMS = sorted(path.name for path in COMPAT.glob("*.py"))

# Arguments a program is run with, where its entrypoint has parameters; and what its output must show.
ARGUMENTS = {"local_entrypoint_args.py": ["--n", "4", "--label", "sweep", "--scale", "0.5", "--verbose"]}
EXPECTED = {"local_entrypoint_args.py": "sweep: n=4 total=7.0 verbose=True"}
PROGRAM_TIMEOUT_S = 120  # a program takes seconds; the margin is for a loaded machine


def nbmodal_run(*args: str, cwd: Path | None = None, timeout: float = PROGRAM_TIMEOUT_S,
                extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``nbmodal run ARGS`` in a subprocess, with this session's NBMODAL_HOME (its local agent)."""
    return subprocess.run([sys.executable, "-m", "nbmodal.cli", *extra, "run", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def test_there_are_at_least_fifteen_programs():
    assert len(PROGRAMS) >= 15, PROGRAMS
    for name in PROGRAMS:
        source = (COMPAT / name).read_text()
        assert "import nbmodal as modal" in source, name
        assert "import nbmodal\n" not in source and "nbmodal." not in source.replace("import nbmodal as", ""), name


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_runs_unchanged(program):
    done = nbmodal_run(str(COMPAT / program), *ARGUMENTS.get(program, []))
    assert done.returncode == 0, f"{program} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert EXPECTED.get(program, " ok") in done.stdout, done.stdout


def test_a_function_runs_by_name_with_its_parameters_as_options():
    done = nbmodal_run(f"{COMPAT / 'local_entrypoint_args.py'}::square", "--x", "7")
    assert done.returncode == 0, done.stderr
    assert "square(7) = 49" in done.stdout


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_a_failure_exits_non_zero_with_the_remote_traceback(tmp_path):
    program = write(tmp_path, "failing.py", """\
        import nbmodal as modal

        app = modal.App("failing")


        @app.function()
        def divide(a, b):
            ratio = a / b
            return ratio


        @app.local_entrypoint()
        def main():
            divide.remote(1, 0)
        """)
    done = nbmodal_run(str(program))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert "ratio = a / b" in done.stderr and "Remote traceback" in done.stderr, done.stderr
    assert "divide.remote(1, 0)" in done.stderr  # the local frame that made the call
    assert "_script_runner" not in done.stderr  # the runner's own frames say nothing


def test_options_come_from_the_signature(tmp_path):
    program = write(tmp_path, "options.py", """\
        import datetime
        from typing import Optional

        import nbmodal as modal

        app = modal.App("options")


        @app.local_entrypoint()
        def main(count: int, when: datetime.datetime, ratio: Optional[float] = None, dry_run: bool = True,
                 label_text="x"):
            print(repr((count, when.year, ratio, dry_run, label_text)))
        """)
    done = nbmodal_run(str(program), "--count", "3", "--when", "2024-05-01", "--no-dry-run", "--label-text", "y")
    assert done.returncode == 0, done.stderr
    assert "(3, 2024, None, False, 'y')" in done.stdout
    missing = nbmodal_run(str(program), "--when", "2024-05-01")
    assert missing.returncode == 2 and "--count" in missing.stderr, missing.stderr
    helped = nbmodal_run(str(program), "--help")
    assert helped.returncode == 0 and "--dry-run" in helped.stdout and "--ratio" in helped.stdout


def test_variadic_arguments_reach_the_program_unparsed(tmp_path):
    program = write(tmp_path, "argv.py", """\
        import argparse

        import nbmodal as modal

        app = modal.App("argv")


        @app.local_entrypoint()
        def main(*arglist):
            parser = argparse.ArgumentParser()
            parser.add_argument("--foo", type=int)
            parser.add_argument("--bar", type=str)
            args = parser.parse_args(args=arglist)
            print("parsed", args.foo * 2, args.bar)
        """)
    done = nbmodal_run(str(program), "--foo=21", '--bar="baz"')
    assert done.returncode == 0, done.stderr
    assert 'parsed 42 "baz"' in done.stdout


def test_names_pick_among_apps_entrypoints_and_functions(tmp_path):
    write(tmp_path, "helpers.py", "def shout(text):\n    return text.upper() + '!'\n")
    program = write(tmp_path, "two_apps.py", """\
        import nbmodal as modal
        from helpers import shout

        first = modal.App("first")
        second = modal.App("second")


        @first.function()
        def greet(name: str = "first"):
            print(shout("hello " + name))


        @second.local_entrypoint()
        def main():
            print("second's entrypoint")


        @second.local_entrypoint()
        def other():
            print("second's other entrypoint")
        """)
    ambiguous = nbmodal_run(str(program))
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert "two_apps.py::NAME" in ambiguous.stderr and "greet" in ambiguous.stderr and "other" in ambiguous.stderr
    by_app = nbmodal_run(f"{program}::first.greet", "--name", "you", cwd=tmp_path.parent)
    assert by_app.returncode == 0, by_app.stderr
    assert "HELLO YOU!" in by_app.stdout  # a sibling module imports, and travels by value
    assert "second's other entrypoint" in nbmodal_run(f"{program}::other").stdout
    unknown = nbmodal_run(f"{program}::nothing")
    assert unknown.returncode == 2 and "no local entrypoint, function or class method 'nothing'" in unknown.stderr


def test_a_class_method_runs_by_name(tmp_path):
    program = write(tmp_path, "model.py", """\
        import nbmodal as modal

        app = modal.App("model")


        @app.cls()
        class Model:
            @modal.method()
            def predict(self, x: int):
                print("prediction", x * 10)
        """)
    done = nbmodal_run(f"{program}::Model.predict", "--x", "4")
    assert done.returncode == 0, done.stderr
    assert "prediction 40" in done.stdout


def test_a_notebook_still_runs_with_options_after_its_path(tmp_path):
    import nbformat

    notebook = tmp_path / "tiny.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('tiny notebook ran')")]
    nbformat.write(nb, notebook)
    done = nbmodal_run(str(notebook), "-o", str(tmp_path / "out.ipynb"), timeout=180)
    assert done.returncode == 0, done.stderr
    assert "tiny notebook ran" in done.stdout and (tmp_path / "out.ipynb").is_file()

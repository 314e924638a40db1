"""%%remote in a real kernel: inputs, outputs, displays, results and errors."""

from __future__ import annotations

import json
import textwrap

import pytest

from notebooks import run_cells

pytestmark = pytest.mark.agent


def test_inputs_travel_by_value_and_by_name(tmp_path):
    (tmp_path / "helpers.py").write_text(textwrap.dedent("""
        OFFSET = 100

        def shifted(v):
            return v + OFFSET

        class Scaler:
            def __init__(self, k):
                self.k = k

            def __call__(self, v):
                return v * self.k
    """))
    nb = run_cells([
        textwrap.dedent("""
            import numpy as np
            import os.path as osp
            import helpers
            from helpers import shifted, Scaler
            base = 3
            def outer(v):
                return v + base          # closes over a notebook global
            class Point:
                def __init__(self, x):
                    self.x = x
            square = lambda v: v * v
            data = {"values": [1, 2, 3]}
        """),
        textwrap.dedent("""
            %%remote
            import os
            pid = os.getpid()
            results = {
                "closure": outer(1),
                "lambda": square(4),
                "class": Point(5).x,
                "dict": sum(data["values"]),
                "module_alias": int(np.arange(4).sum()),
                "submodule_alias": osp.join("a", "b"),
                "local_function": shifted(1),
                "local_class": Scaler(3)(2),
                "local_module": helpers.shifted(2),
            }
        """),
        "import os\nprint(json.dumps(results), pid != os.getpid())".replace("json.", "__import__('json')."),
        "%%remote\nundefined_name + 1",
    ], cwd=tmp_path, allow_errors=True)
    results, separate_process = nb.stream(2).rsplit(" ", 1)
    assert json.loads(results) == {
        "closure": 4, "lambda": 16, "class": 5, "dict": 6, "module_alias": 6, "submodule_alias": "a/b",
        "local_function": 101, "local_class": 6, "local_module": 102}
    assert separate_process.strip() == "True"
    error = nb.error_output(3)
    assert error.ename == "NameError" and "undefined_name" in error.evalue


def test_local_module_functions_travel_by_value(tmp_path):
    """A helper from a file beside the notebook works even where the file doesn't exist."""
    (tmp_path / "nbhelpers_only_here.py").write_text("def triple(v):\n    return 3 * v\n")
    nb = run_cells([
        "from nbhelpers_only_here import triple",
        # Run the remote cell from another directory, without the file on its path.
        "%%remote\nimport os, sys\nos.chdir('/')\nsys.path[:] = [p for p in sys.path if p not in ('', "
        + repr(str(tmp_path)) + ")]\nsys.modules.pop('nbhelpers_only_here', None)\nt = triple(5)",
        "print(t)",
    ], cwd=tmp_path)
    assert nb.stream(2).strip() == "15"


def test_capture_errors_stop_the_cell_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    cells = [
        f"marker = {str(marker)!r}\nimport threading, socket\nfh = open(marker + '.txt', 'w')\n"
        "lock = threading.Lock()\ngen = (i for i in range(3))\nsock = socket.socket()\ncfg = {'lock': lock}",
    ]
    checks = [("fh", "_io.TextIOWrapper", "Open the file inside the cell"),
              ("lock", "_thread.lock", "Create it inside the cell"),
              ("gen", "generator", "Make it a list first"),
              ("sock", "socket.socket", "Open the connection inside the cell"),
              ("cfg", "dict", "_thread.lock")]
    for name, _, _ in checks:
        cells.append(f"%%remote\nopen(marker, 'a').write('ran')\nprint({name})")
    nb = run_cells(cells, cwd=tmp_path, allow_errors=True)
    for i, (name, type_name, hint) in enumerate(checks, start=1):
        error = nb.error_output(i)
        assert error is not None and error.ename == "CaptureError", (name, error)
        assert f"`{name}` ({type_name})" in error.evalue and hint in error.evalue, error.evalue
    assert not marker.exists(), "a cell with an unsendable input ran remotely"


def test_output_streams_live_and_separate(tmp_path):
    nb = run_cells([
        textwrap.dedent("""
            %%remote
            import os, subprocess, sys
            print("py-out")
            print("py-err", file=sys.stderr)
            os.write(1, b"fd1-direct\\n")
            os.write(2, b"fd2-direct\\n")
            subprocess.run(["sh", "-c", "echo child-out; echo child-err >&2"], check=True)
            print("unicode: \u00e9\u4e2d\U0001f600")
        """),
    ], cwd=tmp_path)
    assert nb.stream(0, "stdout") == "py-out\nfd1-direct\nchild-out\nunicode: \u00e9\u4e2d\U0001f600\n"
    assert nb.stream(0, "stderr") == "py-err\nfd2-direct\nchild-err\n"


def test_ten_thousand_lines_none_lost_or_reordered(tmp_path):
    nb = run_cells(["%%remote\nfor i in range(10000):\n    print(f'line {i}')"], cwd=tmp_path)
    assert nb.stream(0).splitlines() == [f"line {i}" for i in range(10000)]


def test_progress_bars_render_as_one_updating_line(tmp_path):
    nb = run_cells([textwrap.dedent("""
        %%remote
        import sys, time
        from tqdm import tqdm
        for _ in tqdm(range(3000), file=sys.stdout, mininterval=0, ascii=True):
            time.sleep(0.0002)
        print("done")
    """)], cwd=tmp_path)
    raw = nb.raw_stream(0)
    # tqdm drew ~3000 states; the cell received a handful of redraws, not thousands.
    assert raw.count("\r") < 100, raw.count("\r")
    final = nb.stream(0).splitlines()
    assert final[0].startswith("100%") and "3000/3000" in final[0] and final[1] == "done"


def test_rich_display_figures_and_last_expression(tmp_path):
    nb = run_cells([
        textwrap.dedent("""
            %%remote
            import matplotlib.pyplot as plt
            class Card:
                def _repr_html_(self):
                    return "<b>card</b>"
            print("before")
            display(Card())
            plt.plot([1, 2, 3])
            plt.show()
            fig, ax = plt.subplots()
            ax.plot([3, 2, 1])           # left open: shown at the end, as inline does
            {"answer": 42}
        """),
        "%%remote\nx = 1\nx + 1",
        "_ + ''",  # the last expression's display is the cell's Out[] value
        "%%remote\nfrom IPython.display import display as show, HTML, Markdown\nshow(HTML('<i>ipython</i>'))\n"
        "show(Markdown('**md**'))",
    ], cwd=tmp_path, allow_errors=True)
    outputs = nb.outputs(0)
    kinds = [o.output_type for o in outputs]
    assert kinds[0] == "stream" and outputs[0].text == "before\n"  # printed before the display, shown before it
    displays = nb.data(0, "display_data")
    assert displays[0]["text/html"] == "<b>card</b>"
    pngs = [d for d in displays if "image/png" in d]
    assert len(pngs) == 2 and all(len(d["image/png"]) > 1000 for d in pngs)
    results = nb.data(0, "execute_result")
    assert results == [{"text/plain": "{'answer': 42}"}]
    assert nb.data(1, "execute_result") == [{"text/plain": "2"}]
    ipython_displays = nb.data(3, "display_data")  # IPython's own display() publishes rich output too
    assert ipython_displays[0]["text/html"] == "<i>ipython</i>" and ipython_displays[1]["text/markdown"] == "**md**"


def test_results_come_back_and_unpicklable_ones_are_named_once(tmp_path):
    nb = run_cells([
        textwrap.dedent("""
            %%remote
            import threading
            import numpy as np
            good = [1, 2, 3]
            lock = threading.Lock()
            arr = np.ones(3)
            class Local:
                v = 7
            obj = Local()
        """),
        "print(good, arr.sum(), obj.v, type(np).__name__, 'lock' in dir())",
    ], cwd=tmp_path)
    warnings = nb.stream(0, "stderr")
    assert warnings.count("ResultWarning") == 1 and "`lock` (_thread.lock)" in warnings
    assert nb.stream(1).strip() == "[1, 2, 3] 3.0 7 module False"


def test_remote_exceptions_look_local_and_stop_run_all(tmp_path):
    nb = run_cells([
        textwrap.dedent("""
            def helper(v):
                if v > 1:
                    raise ValueError(f"bad value {v}")
                return v
        """),
        "%%remote\nx = 1\n\nhelper(x)\nhelper(x + 1)",
        "never = True",
    ], cwd=tmp_path)
    assert nb.error is not None
    error = nb.error_output(1)
    assert error.ename == "ValueError" and error.evalue == "bad value 2"
    text = nb.error_text(1)
    assert 'File "<remote cell In[3]>", line 5, in <module>' in text  # line 5 of the cell, %%remote being 1
    assert "helper(x + 1)" in text and 'raise ValueError(f"bad value {v}")' in text
    assert "nbmodal" not in text.replace("<remote cell", "")  # no client internals
    assert not nb.executed(2)  # Run All stopped at the failing cell


def test_exception_types_that_cannot_be_rebuilt_become_remote_errors(tmp_path):
    nb = run_cells([
        textwrap.dedent("""
            %%remote
            class Picky(Exception):
                def __init__(self, a, b):
                    super().__init__(f"{a}/{b}")
            class Mine(Exception):
                pass
            try:
                raise Mine("rebuilt")
            except Mine as exc:
                mine = exc
            raise Picky(1, 2)
        """),
        "%%remote\nraise mine",
    ], cwd=tmp_path, allow_errors=True)
    error = nb.error_output(0)
    assert error.ename == "RemoteError" and "Picky: 1/2" in error.evalue
    assert "raise Picky(1, 2)" in nb.error_text(0)
    # A class defined remotely travels by value: the same type is rebuilt here.
    assert nb.error_output(1).ename == "Mine"


def test_numpy_64_mib_round_trip_through_a_cell(tmp_path):
    nb = run_cells([
        "import numpy as np\nsource = np.random.default_rng(1).random(8 * 1024 * 1024)  # 64 MiB",
        "%%remote\ndoubled = source * 2",
        "print(doubled.nbytes, bool(np.array_equal(doubled, source * 2)))",
    ], cwd=tmp_path)
    assert nb.stream(2).strip() == f"{64 * 1024 * 1024} True"

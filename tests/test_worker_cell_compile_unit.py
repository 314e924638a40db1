"""A cell run again in a container is not parsed and compiled again (remote_agent/worker/execute.py): the same
source, file and first line reuse the code objects; anything else, or a syntax error, is compiled as it comes."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from nbmodal_wire import pb
from remote_agent.worker import execute as worker_execute
from remote_agent.worker.execute import Interrupts, execute

pytestmark = pytest.mark.unit

PYTHON = "%d.%d" % sys.version_info[:2]


@pytest.fixture(scope="module")
def interrupts():
    return Interrupts()


def run_cell(interrupts: Interrupts, code: str, first_line: int = 1, **inputs) -> pb.RunFinished:
    request = pb.Execute(run_id="r-0000c0de", kind=pb.CELL, code=code, filename="/tmp/nb/cell.py",
                         first_line=first_line, payload=cloudpickle.dumps(inputs), client_python=PYTHON)
    return execute(request, None, interrupts)


def test_a_cell_run_again_reuses_its_code_and_still_reads_each_runs_inputs(interrupts):
    code = "y = x * 2\nz = y + 1\n"
    first = run_cell(interrupts, code, x=1)
    reused = worker_execute._compiled_cell.cache_info().hits
    again = run_cell(interrupts, code, x=10)
    assert worker_execute._compiled_cell.cache_info().hits == reused + 1
    assert sorted(first.values) == sorted(again.values) == ["y", "z"]  # only what the cell itself binds
    assert [cloudpickle.loads(again.values[name]) for name in ("y", "z")] == [20, 21]


def test_the_same_source_lower_in_the_notebook_is_numbered_there(interrupts):
    code = "1 / 0\n"
    assert run_cell(interrupts, code, first_line=1).error.type_name == "ZeroDivisionError"
    moved = run_cell(interrupts, code, first_line=40)
    assert 'cell.py", line 40' in moved.error.traceback  # its own code objects, not the first one's


def test_a_syntax_error_is_reported_each_time_and_never_kept(interrupts):
    code = "def broken(:\n"
    before = worker_execute._compiled_cell.cache_info()
    for _ in range(2):
        assert run_cell(interrupts, code).error.type_name == "SyntaxError"
    after = worker_execute._compiled_cell.cache_info()
    assert (after.hits, after.misses, after.currsize) == (before.hits, before.misses + 2, before.currsize)


def test_kept_cells_are_bounded(interrupts):
    maxsize = worker_execute._compiled_cell.cache_info().maxsize
    assert maxsize is not None
    for n in range(maxsize + 5):
        run_cell(interrupts, f"v = {n}\n")
    assert worker_execute._compiled_cell.cache_info().currsize <= maxsize

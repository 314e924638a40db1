"""notebooks/08-debugging.ipynb runs top to bottom in a real kernel, its debugger answered from a script."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from debugging import run_answering
from kernels import kernel

pytestmark = pytest.mark.agent

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "08-debugging.ipynb"
# What a user types at the breakpoint, by a line of the cell that stops there.
ANSWERS = {"first_try = train(lr=4.0)": ["p step", "p loss", "p bool(np.isnan(w).any())", "c"]}


def test_the_debugging_notebook_stops_at_the_nans_and_goes_on(tmp_path):
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    outputs: dict[str, dict] = {}
    with kernel(tmp_path, load_ext=False) as k:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            answers = next((a for needle, a in ANSWERS.items() if needle in cell.source), [])
            out = run_answering(k, cell.source, answers, timeout=120)
            assert out["error"] is None, (cell.source, out)
            outputs[cell.source.splitlines()[-1]] = out
    stopped = outputs['print("first try:", first_try)']
    assert stopped["prompts"] == ["(Pdb) "] * 4
    text = stopped["stdout"]
    # Where it stopped, then each answer's value, then the run going on to its end.
    assert "-> breakpoint()" not in text and "-> return {\"diverged_at\": step, \"loss\": loss}" in text
    step = int(text.split("-> return")[1].split("\n")[1])
    assert "\nnan\n" in text  # p loss
    assert f"first try: {{'diverged_at': {step}, 'loss':" in text
    assert "'diverged_at'" in str(outputs["first_try"]["data"])  # the name came back to the notebook
    assert "second try: {'converged': True" in outputs['print("second try:", second_try)']["stdout"]
    assert outputs['print("second try:", second_try)']["prompts"] == []
    shell = outputs['print("python processes here:", procs.s)']["stdout"]
    assert "container c-" in shell and "python processes here: " in shell
    assert "bash " in outputs["python -c 'import numpy; print(\"numpy\", numpy.__version__)'"]["stdout"]

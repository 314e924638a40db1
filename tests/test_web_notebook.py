"""notebooks/07-tensorboard-and-demo.ipynb runs top to bottom on the local agent: a tiny training logs its
loss for TensorBoard, TensorBoard and the trained model are served, and both answer."""

from __future__ import annotations

import re

import nbformat
import pytest
from test_example_notebooks import NOTEBOOKS, execute, text

pytestmark = pytest.mark.agent

NAME = "07-tensorboard-and-demo.ipynb"


def test_the_tensorboard_and_demo_notebook(tmp_path):
    nb = execute(NAME, tmp_path)
    trained = text(nb, "print(train.remote(0.3))")
    assert re.search(r"'w': 2\.9\d*, 'b': (0\.9|1\.0)", trained), trained
    served = text(nb, "with app.run():")
    assert re.search(r"predict\(x=2\) = 6\.9\d", served), served
    assert "TensorBoard has 60 loss points" in served and "at step 59" in served
    assert "the block ended: both stopped" in served


def test_the_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")

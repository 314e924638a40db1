"""The example notebooks 02-06 run top to bottom on the local agent, and show what they say they show.

Each runs with a real kernel in a temporary copy of notebooks/ (02 writes a wheelhouse/ beside itself).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from notebooks import ExecutedNotebook, run_notebook

pytestmark = pytest.mark.agent

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def execute(name: str, tmp_path: Path) -> ExecutedNotebook:
    copy = tmp_path / name
    shutil.copy(NOTEBOOKS / name, copy)
    executed = run_notebook(nbformat.read(copy, as_version=4), cwd=tmp_path, timeout=120)
    assert executed.error is None, executed.error
    return executed


def cell(nb: ExecutedNotebook, needle: str) -> int:
    """The index of the one code cell whose source contains ``needle``."""
    found = [i for i, c in enumerate(nb.nb.cells) if c.cell_type == "code" and needle in c.source]
    found = [i for i in found if nb.nb.cells[i].source == needle] or found  # "%image x" is in "%%image x"
    assert len(found) == 1, (needle, found)
    return found[0]


def text(nb: ExecutedNotebook, needle: str) -> str:
    """stdout and stderr of the cell whose source contains ``needle``."""
    index = cell(nb, needle)
    return nb.stream(index) + nb.stream(index, "stderr")


def has_png(nb: ExecutedNotebook, needle: str) -> bool:
    return any("image/png" in data for data in nb.data(cell(nb, needle)))


def test_images_notebook(tmp_path):
    nb = execute("02-images.ipynb", tmp_path)
    assert "nbgreet importable in this kernel: False" in text(nb, "def write_wheel")
    assert (tmp_path / "wheelhouse" / "nbgreet-1.0-py3-none-any.whl").is_file()
    assert not (NOTEBOOKS / "wheelhouse").exists()
    # The build log streamed into the %%image cell: steps, uv's install line, the summary.
    build = text(nb, "%%image greet_env")
    assert "step 3/3" in build and "+ nbgreet==1.0" in build
    assert "image greet_env built on local" in build
    # Its own steps ran; the base (Python) layer may come from an image an earlier test built on this agent.
    assert re.search(r"\([23] of 3 steps", build), build
    assert re.search(r"built on local: [0-9a-f]{12}", text(nb, "%image greet_env"))
    assert "nbgreet imported in the kernel: False" in text(nb, "with greet_env.imports()")
    # The value from a package only the image has, computed remotely and brought back.
    remote = text(nb, "%%remote image=greet_env")
    assert "hello a remote cell, from nbgreet 1.0 in" in remote and "/images/layers/" in remote
    assert "GREETING_SOURCE = 02-images" in remote
    assert "back in the kernel: hello a remote cell, from nbgreet 1.0" in text(nb, 'print("back in the kernel')
    # The same steps through the Python API: a run, and no build (no log, no "built" notice).
    api = text(nb, "nbmodal.Image.debian_slim()")
    assert "HELLO THE PYTHON API, FROM NBGREET 1.0" in api
    assert "nothing rebuilt" in api and "built on" not in api and "step " not in api and "nbgreet==1.0\n" not in api
    assert "greet_env" in text(nb, "%nbmodal image ls") and "ready" in text(nb, "%nbmodal image ls")


def test_training_with_checkpoints_notebook(tmp_path):
    nb = execute("03-training-with-checkpoints.ipynb", tmp_path)
    assert "volume nbmodal-example-03-ckpts: 0 files" in text(nb, "create_if_missing=True")
    first = text(nb, "train(stop_after=90)")
    assert "no checkpoint: starting from step 0" in first and "step 80: loss" in first
    assert "interrupted: simulated preemption at step 90" in first and "step 100" not in first
    files = text(nb, 'ckpts.listdir("/"):\n    print')
    assert "/latest.npz" in files and "/losses.json" in files
    second = text(nb, "w, b, losses = train()\n")
    resumed = re.search(r"resumed from step (\d+)", second)
    assert resumed and int(resumed.group(1)) == 80
    assert "no checkpoint" not in second and "step 200: loss" in second and "finished at step 200" in second
    summary = re.search(r"(\d+) losses on the volume; first ([\d.]+), last ([\d.]+)", text(nb, "ckpts.read_file"))
    assert summary, text(nb, "ckpts.read_file")
    count, first_loss, last_loss = int(summary.group(1)), float(summary.group(2)), float(summary.group(3))
    assert count == 200 and last_loss < first_loss
    assert has_png(nb, "ckpts.read_file")


def test_sweep_notebook(tmp_path):
    nb = execute("04-sweep.ipynb", tmp_path)
    lrs = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
    assert "8 results from .map" in text(nb, "evaluate.map(lrs)")
    table = text(nb, "import pandas") + "".join(d.get("text/plain", "") for d in nb.data(cell(nb, "import pandas")))
    assert all(re.search(rf"^\s*{lr}\s+0\.\d+\s+0\.\d+", table, re.M) for lr in lrs), table
    sweep = text(nb, "%%remote map=lr:lrs")
    assert all(f"lr={lr}: loss" in sweep for lr in lrs), sweep
    assert "8 results from the sweep cell" in text(nb, "results from the sweep cell")
    assert re.search(r"best: lr=[\d.]+ \(loss 0\.\d+", text(nb, "results from the sweep cell"))
    assert has_png(nb, "plt.subplots")


def test_pipeline_notebook(tmp_path):
    nb = execute("05-pipeline.ipynb", tmp_path)
    detached = nb.data(cell(nb, "%%remote --detach"))
    assert any("application/vnd.jupyter.widget-view+json" in d for d in detached), detached  # the live widget
    run_id = re.search(r"producer run: (r-[0-9a-f]{8})", text(nb, "producer = _")).group(1)
    assert text(nb, "consume.spawn(w)").count("r-") == 3
    assert "consumed 40" in text(nb, "deadline = time.monotonic()")
    attached = text(nb, "%nbmodal attach")
    assert "produced 10/40" in attached and "produced 40/40" in attached
    summary = text(nb, "per_consumer = ")
    assert "produced 40, consumed 40" in summary  # `produced` was loaded by attach
    assert "distinct items in the dict: 40, duplicates: 0" in summary
    assert "every item consumed exactly once: True" in summary
    assert f"sum of squares: {sum(i * i for i in range(40))}" in summary
    assert run_id


def test_gpus_notebook_says_which_path_it_took(tmp_path):
    nb = execute("06-gpus.ipynb", tmp_path)
    assert "HOST" in text(nb, "%nbmodal gpus") or "no GPUs" in text(nb, "%nbmodal gpus")
    path = text(nb, "have_gpu = any(")
    result = text(nb, "needs_h100.remote()")
    assert ("GPU path:" in path) != ("CPU-only path:" in path), path
    if "CPU-only path:" in path:
        assert "CPU-only path: gpu='H100' was refused at once" in result
        assert "gpu=H100 can never be met" in result
    else:
        assert "GPU path:" in result and "CUDA_VISIBLE_DEVICES =" in result


def test_gpus_notebook_takes_the_gpu_path_where_the_agent_has_a_card(tmp_path, monkeypatch):
    """Declared cards (the test double for NVML) on an agent of its own: the notebook's GPU path runs."""
    from nbmodal._runtime.local_agent import stop_local_agent

    home = tmp_path / "gpu-home"
    monkeypatch.setenv("NBMODAL_HOME", str(home))  # the kernel, and the agent it starts, inherit these
    monkeypatch.setenv("NBMODAL_FAKE_GPUS", "A10G:1")
    try:
        nb = execute("06-gpus.ipynb", tmp_path)
    finally:
        stop_local_agent(home / "agent")
    assert "local: GPU 0 NVIDIA A10G" in text(nb, "have_gpu = any(")
    assert "GPU path: a gpu='any' run can get a card" in text(nb, "have_gpu = any(")
    result = text(nb, "needs_h100.remote()")
    assert "CUDA_VISIBLE_DEVICES = GPU-" in result and "GPU path: " in result and "CPU-only" not in result


def test_an_example_notebook_runs_with_the_cli(tmp_path):
    shutil.copy(NOTEBOOKS / "04-sweep.ipynb", tmp_path)
    done = subprocess.run([sys.executable, "-m", "nbmodal.cli", "run", str(tmp_path / "04-sweep.ipynb")],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "8 results from .map" in done.stdout and "lr=10.0: loss" in done.stdout
    saved = nbformat.read(tmp_path / "04-sweep.executed.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for c in saved.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("name", ["02-images", "03-training-with-checkpoints", "04-sweep", "05-pipeline", "06-gpus"])
def test_example_notebooks_are_saved_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")

"""Sessions keep a remote namespace; warm containers make re-runs instant."""

from __future__ import annotations

import textwrap

import pytest

from notebooks import run_cells

pytestmark = pytest.mark.agent


def test_session_keeps_its_namespace_and_is_never_overwritten_by_stale_copies(tmp_path):
    nb = run_cells([
        "%%remote session=s1\nimport os\nmodel = {'weights': [1, 2], 'pid': os.getpid()}\nsteps = 0",
        # The notebook's copy of `model` is changed locally: the session's own object wins.
        "model = 'stale local copy'\nlr = 0.5",
        "%%remote session=s1\nmodel['weights'].append(3)\nsteps += 1\nseen_lr = lr\nsame_pid = model['pid'] == os.getpid()\n"
        "print(model['weights'])",
        # Only what a cell assigns comes back: the local `model` is still the local one.
        "print(model, steps, seen_lr, same_pid)",
        "%nbmodal sessions",
    ], cwd=tmp_path)
    assert nb.stream(2).strip() == "[1, 2, 3]"
    assert nb.stream(3).strip() == "stale local copy 1 0.5 True"
    listing = nb.stream(4)
    assert "s1" in listing and "model" in listing and "steps" in listing


def test_large_and_unpicklable_session_values_stay_remote_behind_a_placeholder(tmp_path):
    nb = run_cells([
        textwrap.dedent("""
            %%remote session=big max_result=1MiB
            import threading
            import numpy as np
            weights = np.arange(1_000_000, dtype=np.float64)   # 8 MB pickled
            small = weights[:3].tolist()
            lock = threading.Lock()
        """),
        "print(type(weights).__name__, small)\nprint(repr(weights))\nprint(repr(lock))",
        "fetched = weights.fetch()\nprint(type(fetched).__name__, fetched.shape, fetched[-1])",
        "%%remote session=big\ntotal = float(weights.sum())",  # the remote object is still there
        "print(total)",
        "%nbmodal stop big",
        "%nbmodal sessions",
    ], cwd=tmp_path)
    lines = nb.stream(1).splitlines()
    assert lines[0] == "RemoteValue [0.0, 1.0, 2.0]"
    assert "'weights': numpy.ndarray, 7.6 MiB, kept in session 'big'" in lines[1]
    assert "weights.fetch() downloads it" in lines[1]
    assert "'lock': _thread.lock, lives only in session 'big'" in lines[2]
    assert "cannot pickle '_thread.lock' object" in lines[2] and "`%%remote session=big` cells" in lines[2]
    assert nb.stream(2).strip() == "ndarray (1000000,) 999999.0"
    assert nb.stream(4).strip() == str(float(sum(range(1_000_000))))
    assert "session 'big' stopped" in nb.stream(5)
    assert "big" not in nb.stream(6)


def test_warm_container_serves_the_next_run(tmp_path):
    nb = run_cells([
        "%%remote\nimport os\npid1 = os.getpid()",
        "%%remote\nimport os\npid2 = os.getpid()",
        "print(pid1 == pid2)",
    ], cwd=tmp_path)
    assert nb.stream(2).strip() == "True"


def test_runs_do_not_leak_namespace_without_a_session(tmp_path):
    nb = run_cells([
        "%%remote\nsecret_remote_only = 1",
        "del secret_remote_only",
        "%%remote\nprint('secret_remote_only' in globals())",
    ], cwd=tmp_path)
    assert nb.stream(2).strip() == "False"

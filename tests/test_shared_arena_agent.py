"""Large values between the notebook and a container on one machine go through shared arenas, and a region
someone holds is never written over (nbmodal_wire/shared_arena.py)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import nbmodal
from nbmodal_wire import shared_arena

pytestmark = pytest.mark.agent

app = nbmodal.App("tests-shared-arena")
MIB = 1 << 20


@app.function()
def keep(value):
    """Mutates its argument and keeps it across calls; says what it holds."""
    import sys

    held = sys.__dict__.setdefault("_nbmodal_test_held", [])
    value[:4] = -1.0
    held.append(value)
    return [(float(v[0]), float(v[4:].sum())) for v in held]


@app.function()
def twice(value):
    return value * 2 if value.sum() < 0 else value  # a negative sum: a new array, else the argument itself


def _array(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((16 * MIB) // 8)


def test_values_held_across_calls_on_either_side_are_not_overwritten(agent_address, nbmodal_home):
    first, second = _array(1), _array(2)
    assert keep.remote(first) == [(-1.0, first[4:].sum())]
    # The container still holds (and changed) the region of `first`: the next argument must go elsewhere.
    assert keep.remote(second) == [(-1.0, first[4:].sum()), (-1.0, second[4:].sum())]
    assert first[0] != -1.0  # the notebook's own array is not the container's

    out = twice.remote(_array(3))
    out[:2] = 7.0  # the notebook may change what it got: its region until released
    again = twice.remote(_array(4))
    assert np.array_equal(again, _array(4))
    assert out[0] == 7.0 and np.array_equal(out[2:], _array(3)[2:]), "a result overwrote one still held"
    arena = nbmodal_home / "agent" / "blobs" / shared_arena.ARENA_DIR
    assert arena.is_dir() and any(arena.iterdir())  # they did travel through arenas
    del out, again
    gc.collect()
    for seed in (5, 6):  # released: the same regions serve again
        assert np.array_equal(twice.remote(_array(seed)), _array(seed))


@app.function()
def die_holding(value):
    import os

    os._exit(3 if value.sum() else 4)  # dies while it holds the notebook's region


@app.function()
def arrays(n: int):
    import numpy as np

    for seed in range(n):
        yield np.random.default_rng(seed).random((16 * MIB) // 8)


def test_a_region_a_dead_container_held_is_reused(agent_address, nbmodal_home):
    writer = shared_arena.writer_for(nbmodal_home / "agent" / "blobs")
    with pytest.raises(Exception, match="(?i)died|exit"):
        die_holding.remote(_array(7))
    segments = len(writer.segments)
    assert segments >= 1
    for seed in (8, 9):  # its lock went with it: the region serves the next arguments, no new memory
        assert np.array_equal(twice.remote(_array(seed)), _array(seed))
    assert len(writer.segments) == segments


def test_large_generator_items_held_together_stay_intact(agent_address):
    items = list(arrays.remote_gen(3))
    for seed, item in enumerate(items):
        assert np.array_equal(item, np.random.default_rng(seed).random((16 * MIB) // 8))

"""Collections between runs (nbmodal_wire/gc_timing.py): the collection CPython is about to make, made
early at a quiet moment; nothing before half the threshold; a full collection left to CPython."""

from __future__ import annotations

import gc
import weakref

import pytest

from nbmodal_wire.gc_timing import collect_if_due

pytestmark = pytest.mark.unit


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture()
def thresholds():
    saved, enabled = gc.get_threshold(), gc.isenabled()
    gc.collect()
    gc.disable()  # the test's allocations mustn't set off CPython's own collections meanwhile
    yield
    gc.set_threshold(*saved)
    gc.enable() if enabled else gc.disable()


def garbage() -> weakref.ref:
    node = Node()
    ref = weakref.ref(node)
    del node
    return ref


def near_threshold(threshold1: int, threshold2: int) -> list:
    """The young generation's count past half its threshold but short of it (CPython's own trigger)."""
    kept: list[list[int]] = [[] for _ in range(200)]  # tracked objects that stay: they count
    gc.set_threshold(gc.get_count()[0] + 100, threshold1, threshold2)
    return kept


def test_nothing_before_half_the_threshold_then_the_young_generation(thresholds):
    gc.set_threshold(100_000, 10, 10)
    gc.enable()
    ref = garbage()
    assert collect_if_due() is None and ref() is not None
    kept = near_threshold(10, 10)
    assert collect_if_due() == 0 and kept
    assert ref() is None  # its cycle was collected


def test_the_middle_generation_when_its_turn_has_come(thresholds):
    for _ in range(3):
        gc.collect(0)  # each counts one for the middle generation
    ref = garbage()
    kept = near_threshold(2, 1000)
    gc.enable()
    assert collect_if_due() == 1 and ref() is None and kept


def test_a_full_collection_is_left_to_cpython(thresholds):
    for _ in range(3):
        gc.collect(1)  # each counts one for the oldest generation
    ref = garbage()
    kept = near_threshold(1, 1)
    gc.enable()
    assert gc.get_count()[2] > 1
    assert collect_if_due() is None and ref() is not None and kept


def test_a_disabled_collector_is_left_alone(thresholds):
    ref = garbage()
    kept = near_threshold(10, 10)
    assert collect_if_due() is None and ref() is not None and kept

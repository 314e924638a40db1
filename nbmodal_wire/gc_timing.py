"""Python's cyclic garbage collector, run when a process is between runs rather than in the middle of one.

CPython collects its youngest generation whenever 700 more container objects have been allocated than
freed, wherever that happens to be: in a warm call's hot path it lands on one call in a few dozen, and
adds that collection (0.1–0.5 ms, several ms for an older generation) to it. The agent and a container
know when a run's result has just been sent and nothing waits on them: ``collect_if_due`` does the
collection that is coming anyway there, once the count is past half of the threshold, so that a short
run rarely sets one off. It collects what CPython would (the older generation whose turn it is), except
the oldest: a full collection is left to CPython's own trigger and its rule for when one is worth it.

    channel.send(finished)   # the result is on its way
    collect_if_due()
"""

from __future__ import annotations

import gc

# Collected early from this fraction of the youngest generation's threshold on.
EARLY_FRACTION = 0.5


def collect_if_due() -> int | None:
    """Collect the generation whose turn is near, if one is; which one was collected, or None.

    >>> collect_if_due() in (None, 0, 1)
    True
    """
    if not gc.isenabled():
        return None
    threshold0, threshold1, threshold2 = gc.get_threshold()
    count0, count1, count2 = gc.get_count()
    if threshold0 <= 0 or count0 < threshold0 * EARLY_FRACTION:
        return None
    if count2 > threshold2:
        return None  # a full collection may be due: CPython's trigger decides (it knows the long-lived counts)
    generation = 1 if count1 > threshold1 else 0
    gc.collect(generation)
    return generation

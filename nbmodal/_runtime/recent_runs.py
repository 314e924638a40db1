"""A dict of the runs this process made, kept to the newest ``limit``: what it knows without asking.

The client remembers where each run it started lives (``connection.run_hosts``) so that attaching to
or cancelling it by id needs no search; a notebook that makes a hundred thousand warm calls must not
keep an entry for each. An id that has fallen out is found again by asking the hosts
(``connection.locate_run``), as for a run another process started.

    >>> hosts = RecentRuns(limit=2)
    >>> hosts["r-1"], hosts["r-2"], hosts["r-3"] = "local", "gpu1", "local"
    >>> list(hosts)
    ['r-2', 'r-3']
"""

from __future__ import annotations

import threading

DEFAULT_LIMIT = 10_000


class RecentRuns(dict[str, str]):
    """run id -> host name, the oldest entries dropped beyond ``limit`` (insertion order is age)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__()
        self.limit = limit
        self._lock = threading.Lock()  # runs start from many threads (maps, sweeps)

    def __setitem__(self, run_id: str, host: str) -> None:
        with self._lock:
            super().pop(run_id, None)  # set again: it is new again
            super().__setitem__(run_id, host)
            while len(self) > self.limit:
                try:
                    super().__delitem__(next(iter(self)))
                except (StopIteration, KeyError, RuntimeError):
                    break

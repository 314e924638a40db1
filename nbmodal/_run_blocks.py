"""``with app.run(detach=...)``: what the block means for the runs started inside it.

Outside any block, a ``.spawn()`` run belongs to the agent and outlives the kernel (nbmodal's notebook
default). Inside ``with app.run():`` it is as in Modal's ephemeral app: runs spawned in the block that are
still going when it ends are cancelled. Inside ``with app.run(detach=True):`` every run started in the block
is a detached run: it keeps running after the block and the kernel, and keeps its results for
``FunctionCall.get()`` / ``nbmodal attach`` later.

    with app.run(detach=True):
        call = train.spawn(cfg)     # goes on after the block, and after the kernel exits
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class RunBlock:
    detach: bool
    spawned: list[str] = field(default_factory=list)  # run ids of the block's spawned runs

    def stop_spawned(self) -> None:
        """Cancel the block's spawned runs that are still going (Modal stops an ephemeral app's calls)."""
        from nbmodal._runtime.connection import locate_run
        from nbmodal_wire import pb

        for run_id in self.spawned:
            try:
                client = locate_run(run_id).client()
                if client.get_run(run_id).state in (pb.PENDING, pb.RUNNING):
                    client.cancel(run_id)
                    log.info("app.run() ended: cancelled its spawned run %s (use app.run(detach=True) to keep "
                             "such runs going)", run_id)
            except Exception as exc:  # an agent gone meanwhile took its runs with it
                log.warning("could not stop run %s at the end of app.run(): %s", run_id, exc)


_blocks: list[RunBlock] = []
_lock = threading.Lock()


def enter(detach: bool) -> RunBlock:
    block = RunBlock(detach)
    with _lock:
        _blocks.append(block)
    return block


def leave(block: RunBlock) -> None:
    with _lock:
        if block in _blocks:
            _blocks.remove(block)
    if not block.detach:
        block.stop_spawned()


def detached() -> bool:
    """Whether runs started now are in a ``with app.run(detach=True):`` block."""
    with _lock:
        return any(block.detach for block in _blocks)


def note_spawned(run_id: str) -> None:
    """A run ``.spawn()``/``spawn_map()`` started: the innermost block decides its fate at its end."""
    with _lock:
        if _blocks:
            _blocks[-1].spawned.append(run_id)

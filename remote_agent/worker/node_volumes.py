"""Around each run of a Slurm job with node-local volume copies: sync before, commit after.

The agent syncs its own copy of each mounted volume before a run and commits it after
(``replicas.py``); a job whose volumes are node-local copies (``volume_links.py``) brings its copy up to
the agent's before the user's code starts and sends its writes to the agent before the run ends, so
the agent's commit at the run's end includes them. A failure is said in the run's output and does not
fail the run: writes stay on the node (committed by the next run's end or ``commit()``).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# nbmodal_wire.node_copies.ENV, read here without importing that module: every container runs these hooks,
# and only a Slurm job with node-local copies needs it (importing it costs a container's start ~8 ms).
COPIES_ENV = "NBMODAL_NODE_COPIES"


def before_run() -> None:
    if not os.environ.get(COPIES_ENV):
        return
    from nbmodal_wire import node_copies

    for name in sorted(node_copies.copies()):
        try:
            node_copies.sync(name)
        except node_copies.NodeCopyError as exc:
            _say(f"{exc}. This run sees the node's copy as it was.")


def after_run() -> None:
    if not os.environ.get(COPIES_ENV):
        return
    from nbmodal_wire import node_copies

    for name in sorted(node_copies.copies()):
        try:
            node_copies.commit(name, if_changed=True)
        except node_copies.NodeCopyError as exc:
            _say(f"{exc}. The run's writes stay in this job's copy and are committed at the end of its next "
                 f"run or by commit().")


def remove() -> None:
    """The job is ending: its node-local copies go (their writes were committed after each run)."""
    if not os.environ.get(COPIES_ENV):
        return
    from nbmodal_wire import node_copies

    node_copies.remove_all()


def _say(message: str) -> None:
    log.warning("%s", message)
    sys.stderr.write(f"nbmodal: {message}\n")  # the run's output (captured): the user sees it in the cell
    sys.stderr.flush()

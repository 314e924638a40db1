"""Run by tests/test_disk_full.py inside bubblewrap, with NBMODAL_HOME on a small tmpfs of its own:
an agent whose state dir fills up refuses runs and storage writes naming ENOSPC, keeps its
Dict/Queue database intact, and works again once space returns. Prints one JSON line of findings."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import nbmodal
from nbmodal._runtime.local_agent import stop_local_agent

home = Path(os.environ["NBMODAL_HOME"])
app = nbmodal.App("disk-full")


@app.function()
def answer() -> int:
    return 42


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem refuses another byte; how many bytes it took."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            while True:
                try:
                    written += f.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def refusal(action) -> str:
    try:
        action()
    except Exception as exc:  # what the user sees, whatever its type
        return f"{type(exc).__name__}: {exc}"
    return ""


findings: dict = {}
try:
    kept = nbmodal.Dict.from_name("kept", create_if_missing=True)
    kept["a"] = "before"
    queue = nbmodal.Queue.from_name("jobs", create_if_missing=True)
    queue.put("first")
    findings["before"] = answer.remote()

    findings["filler_bytes"] = fill(home / "filler")
    findings["dict_put"] = refusal(lambda: kept.__setitem__("b", "x" * 300_000))
    findings["queue_put"] = refusal(lambda: queue.put("y" * 300_000))
    findings["run"] = refusal(answer.remote)
    findings["dict_a_while_full"] = kept["a"]
    findings["queue_len_while_full"] = queue.len()

    db = sqlite3.connect(f"file:{home / 'agent' / 'storage.db'}?mode=ro", uri=True)
    findings["integrity"] = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()

    (home / "filler").unlink()
    started = time.monotonic()
    kept["b"] = "x" * 300_000
    queue.put("second")
    findings["after"] = answer.remote()
    findings["recovered_s"] = round(time.monotonic() - started, 3)
    findings["dict_after"] = [kept["a"], len(kept["b"])]
    findings["queue_after"] = [queue.get(), queue.get()]
finally:
    stop_local_agent(home / "agent")
print(json.dumps(findings))
sys.exit(0)

"""How long a notebook waits when its agent is killed mid-run, and what it loses (issue 21's figures).

A real kernel (tests/kernels.py) against a private agent (``NBMODAL_HOME`` under /tmp) runs a ``%%remote``
cell printing a numbered line every 40 ms. Once the run has a supervisor (remote_agent/supervision.py) the
agent gets ``kill -9``; the cell's client reconnects (starting the next agent) and the run goes on. Per trial:
the longest silence after the kill (lines normally arrive every 40 ms), when output resumed after it, and
the lines lost or repeated (both must be 0).
Prints one JSON object.

    .venv/bin/python bench/survive_probe.py --trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CELL = "%%remote\nimport time\nfor i in range({lines}):\n    print(i, flush=True)\n    time.sleep(0.04)\n"


def lines_with_times(kern, msg_id: str, timeout: float) -> tuple[list[tuple[float, int]], str]:
    """(arrival time, number) of each line the cell printed, and its stderr, until it is idle."""
    got: list[tuple[float, int]] = []
    stderr, partial = "", ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kern.kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            partial += content["text"]
            *complete, partial = partial.split("\n")
            now = time.monotonic()
            got += [(now, int(line)) for line in complete if line.strip()]
        elif kind == "stream":
            stderr += content["text"]
        elif kind == "status" and content["execution_state"] == "idle":
            return got, stderr
    raise TimeoutError(f"the cell did not finish within {timeout} s")


def trial(kern, state: Path, lines: int) -> dict:
    from nbmodal._runtime.local_agent import read_agent_json

    address = read_agent_json(state)
    assert address is not None, "no agent runs"
    agent_pid = address.pid
    for old in (state / "supervisors").glob("*.json"):
        old.unlink(missing_ok=True)  # a record of an earlier trial's container would look like this one's
    msg_id = kern.start(CELL.format(lines=lines))
    started = time.monotonic()
    while not list((state / "supervisors").glob("*.json")):
        if time.monotonic() - started > 30:
            raise TimeoutError("the run never got a supervisor")
        time.sleep(0.05)
    killed = time.monotonic()
    os.kill(agent_pid, signal.SIGKILL)
    got, stderr = lines_with_times(kern, msg_id, timeout=120)
    numbers = [n for _, n in got]
    # Lines already on their way arrive just after the kill; the stall is the longest silence after it.
    times = [killed] + [t for t, _ in got if t > killed]
    gaps = [(later - earlier, later) for earlier, later in zip(times, times[1:])]
    stall, resumed = max(gaps) if gaps else (0.0, killed)
    after = read_agent_json(state)
    new_pid = after.pid if after is not None else 0
    return {"lines": lines, "received": len(numbers), "lost": len(set(range(lines)) - set(numbers)),
            "repeated": len(numbers) - len(set(numbers)), "in_order": numbers == sorted(numbers),
            "longest_silence_s": round(stall, 2), "kill_to_resumed_s": round(resumed - killed, 2),
            "normal_gap_s": 0.04, "reconnected_notice": "reconnected" in stderr, "new_agent": new_pid != agent_pid}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--lines", type=int, default=150)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="nbmodal-survive-"))
    os.environ["NBMODAL_HOME"] = str(home)
    from kernels import kernel

    from nbmodal._runtime.local_agent import stop_local_agent

    results = []
    try:
        with kernel(home) as kern:
            assert kern.execute("%%remote\nprint('warm')")["error"] is None
            for _ in range(args.trials):
                results.append(trial(kern, home / "agent", args.lines))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        stop_local_agent(home / "agent")
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({"trials": results}, indent=1))
    return 0 if all(r["lost"] == 0 and r["repeated"] == 0 and r["in_order"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

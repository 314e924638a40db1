"""The sidebar's poll with hundreds of runs: GET /nbmodal/api/overview latency through a real Jupyter server.

Starts a private agent (fresh NBMODAL_HOME) and `jupyter server` with nbmodal's extension, submits N
detached trivial runs, then times the overview call beside Jupyter's own /api/status on the same server
(the peer: what any poll through Jupyter costs). Run: .venv/bin/python bench/bench_sidebar.py [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="nbm-bench-sidebar-")
    os.environ["NBMODAL_HOME"] = home
    import nbmodal
    from jupyterserver import jupyter_server
    from nbmodal._runtime.local_agent import stop_local_agent

    app = nbmodal.App("bench-sidebar")

    @app.function()
    def nothing(i: int) -> int:
        return i

    calls = [nothing.spawn(i) for i in range(args.runs)]
    for call in calls:
        call.get(timeout=600)
    try:
        with jupyter_server(Path(tempfile.mkdtemp())) as server:
            def timed(url: str) -> float:
                request = urllib.request.Request(url, headers={"Authorization": f"token {server.token}"})
                started = time.perf_counter()
                urllib.request.urlopen(request, timeout=30).read()
                return (time.perf_counter() - started) * 1000

            overview = f"{server.url}nbmodal/api/overview"
            status = f"{server.url}api/status"
            timed(overview)
            ours = [timed(overview) for _ in range(args.samples)]
            peer = [timed(status) for _ in range(args.samples)]
    finally:
        stop_local_agent(Path(home) / "agent")
    p50, peer50 = statistics.median(ours), statistics.median(peer)
    print(f"| runs on the agent | overview p50 | /api/status p50 | ratio |\n|---|---|---|---|\n"
          f"| {args.runs} | {p50:.1f} ms | {peer50:.1f} ms | {p50 / peer50:.1f}× |")


if __name__ == "__main__":
    main()

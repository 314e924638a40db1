"""How nbmodal's costs grow with the work (issue 19's scale report), on the embedded local agent.

* warm ``f.remote()`` with 1, 4 and 16 concurrent callers (threads of this process, each calling in a
  loop): p50/p99 of a call, and the agent's CPU per call (its /proc ticks over the calls made);
* ``f.map`` throughput for 10^3 .. 10^6 trivial inputs (one map each, wall time);
* the sidebar's overview (``Dashboard().overview()``, what GET /nbmodal/api/overview answers) with
  10^2, 10^3, 10^4 runs in the agent's history: median of 20 polls;
* the agent's resident memory (VmRSS) after 10^3, 10^4, 10^5 runs.

Each run uses a fresh NBMODAL_HOME and so its own agent. Writes one JSON object to stdout and, with
``--plot PATH``, a PNG of the four curves. ``--quick`` is a smoke test (reduced counts).

    .venv/bin/python bench/bench_scale.py --plot bench/scale.png > scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time


def trivial():
    return 1


def same(x):
    return x


def _agent_ticks(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def measure_callers(fn, agent_pid: int, callers: int, calls_each: int) -> dict:
    """``callers`` threads, each making ``calls_each`` warm calls after a few untimed ones."""
    samples: list[list[float]] = [[] for _ in range(callers)]
    barrier = threading.Barrier(callers + 1)

    def caller(out: list[float]) -> None:
        for _ in range(5):
            fn.remote()
        barrier.wait()
        for _ in range(calls_each):
            started = time.perf_counter()
            fn.remote()
            out.append((time.perf_counter() - started) * 1e3)

    threads = [threading.Thread(target=caller, args=(out,)) for out in samples]
    for thread in threads:
        thread.start()
    barrier.wait()
    ticks, started = _agent_ticks(agent_pid), time.perf_counter()
    for thread in threads:
        thread.join()
    wall, ticks = time.perf_counter() - started, _agent_ticks(agent_pid) - ticks
    flat = [ms for out in samples for ms in out]
    return {"callers": callers, "calls": len(flat), "p50_ms": round(_pct(flat, 50), 3),
            "p99_ms": round(_pct(flat, 99), 3), "calls_per_s": round(len(flat) / wall, 1),
            "agent_cpu_ms_per_call": round(ticks / os.sysconf("SC_CLK_TCK") / len(flat) * 1e3, 3)}


def measure_map(fn, n: int) -> dict:
    started = time.perf_counter()
    count = sum(1 for _ in fn.map(range(n)))
    elapsed = time.perf_counter() - started
    assert count == n
    return {"inputs": n, "seconds": round(elapsed, 3), "inputs_per_s": round(n / elapsed, 1)}


def measure_overview(polls: int) -> float:
    from nbmodal.server.dashboard import Dashboard

    dashboard = Dashboard()
    dashboard.overview()
    times = []
    for _ in range(polls):
        started = time.perf_counter()
        dashboard.overview()
        times.append((time.perf_counter() - started) * 1e3)
    return round(statistics.median(times), 3)


def run_history(fn, agent_pid: int, stops: list[int], poll_at: set[int], polls: int) -> list[dict]:
    """Warm calls until the agent has seen each of ``stops`` runs; the overview and RSS at each."""
    rows, done, started = [], 1, time.perf_counter()  # the first call started the agent
    for stop in stops:
        while done < stop:
            fn.remote()
            done += 1
        row = {"runs": stop, "agent_rss_mib": round(_rss_mib(agent_pid), 1),
               "elapsed_s": round(time.perf_counter() - started, 1)}
        if stop in poll_at:
            row["overview_p50_ms"] = measure_overview(polls)
        rows.append(row)
        print(f"history: {row}", file=sys.stderr, flush=True)
    return rows


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    callers = result["callers"]
    ax = axes[0][0]
    xs = [c["callers"] for c in callers]
    ax.plot(xs, [c["p50_ms"] for c in callers], "o-", label="call p50 (ms)")
    ax.plot(xs, [c["agent_cpu_ms_per_call"] for c in callers], "s-", label="agent CPU per call (ms)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent callers")
    ax.set_title("warm f.remote()")
    ax.legend()
    ax = axes[0][1]
    maps = result["map"]
    ax.plot([m["inputs"] for m in maps], [m["inputs_per_s"] for m in maps], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("inputs of one map")
    ax.set_ylabel("inputs/s")
    ax.set_title("f.map throughput")
    history = result["history"]
    polled = [h for h in history if "overview_p50_ms" in h]
    ax = axes[1][0]
    ax.plot([h["runs"] for h in polled], [h["overview_p50_ms"] for h in polled], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("runs in the agent's history")
    ax.set_ylabel("ms")
    ax.set_title("sidebar overview poll p50")
    ax = axes[1][1]
    ax.plot([h["runs"] for h in history], [h["agent_rss_mib"] for h in history], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("runs made")
    ax.set_ylabel("MiB")
    ax.set_title("agent resident memory")
    fig.suptitle(f"nbmodal scale, {result['date']} ({result['machine']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced counts: a smoke test")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the curves here")
    parser.add_argument("--max-runs", type=int, default=10**5,
                        help="the history's last stop (default 10^5; lower it where that takes too long)")
    parser.add_argument("--max-map", type=int, default=10**6, help="the largest map (default 10^6)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="nbmodal-bench-scale-")
    os.environ["NBMODAL_HOME"] = home
    import nbmodal
    from nbmodal._runtime.connection import get_client
    from nbmodal._runtime.local_agent import stop_local_agent

    app = nbmodal.App("bench-scale")
    fns = {f.__name__: app.function()(f) for f in (trivial, same)}
    assert fns["trivial"].remote() == 1
    agent_pid = get_client().address.pid
    calls_each = {1: 2000, 4: 500, 16: 125} if not args.quick else {1: 200, 4: 50, 16: 13}
    maps = [n for n in ([10**3, 10**4, 10**5, 10**6] if not args.quick else [10**3, 10**4]) if n <= args.max_map]
    stops = [n for n in ([10**2, 10**3, 10**4, 10**5] if not args.quick else [10**2, 10**3]) if n <= args.max_runs]
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
                    "machine": f"{os.cpu_count()} cores", "loadavg_start": os.getloadavg()[0]}
    try:
        # First, while the agent's history holds only these runs (the first call's among them).
        result["history"] = run_history(fns["trivial"], agent_pid, stops, poll_at={10**2, 10**3, 10**4}, polls=20)
        result["callers"] = [measure_callers(fns["trivial"], agent_pid, n, calls) for n, calls in calls_each.items()]
        result["map"] = [measure_map(fns["same"], n) for n in maps]
    finally:
        result["loadavg_end"] = os.getloadavg()[0]
        stop_local_agent()
    print(json.dumps(result))
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()

"""Eight notebooks against one agent (issue 21's load test): no lost output, no stuck run, agent memory flat.

Eight real Jupyter kernels (this project's .venv Python, started as tests/kernels.py starts them) each run, in a
loop until ``--minutes`` have passed, two cells against ONE local agent in a private ``NBMODAL_HOME`` under
/tmp:

* a ``%%remote`` cell printing ``--lines`` numbered lines: the cell's stdout must be exactly those lines, in
  order;
* ``list(square.map(range(--inputs)))`` of a function that prints one line per input: every result right
  and in order, every input's line printed (inputs run concurrently, so their lines may interleave).

A cell that has not finished within ``--cell-timeout`` seconds is a stuck run (the kernel is interrupted and
the loop goes on). The agent's resident memory (VmRSS from /proc/<agent pid>/status) and its number of live
containers are sampled every ``--sample-s`` seconds. At the end it prints a summary and writes it (JSON and
Markdown) to ``bench/results/load-<time>.{json,md}``; it exits 1 if any line was lost or any run stuck.

    .venv/bin/python bench/load_notebooks.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/kernels.py: how this project drives real kernels

SETUP = """
import nbmodal
app = nbmodal.App("load-{k}")

@app.function()
def square(x):
    print(f"input {{x}}", flush=True)
    return x * x
"""

REMOTE_CELL = """%%remote
for i in range({lines}):
    print(f"k{k} c{c} line {{i}}")
"""

MAP_CELL = """_r = list(square.map(range({inputs})))
print(f"map k{k} c{c} right={{_r == [x * x for x in range({inputs})]}} n={{len(_r)}}")
"""


@dataclass
class Tally:
    """What one notebook did and what went wrong."""

    remote_cells: int = 0
    map_cells: int = 0
    map_inputs: int = 0
    lost_lines: int = 0
    stuck: int = 0
    errors: list[str] = field(default_factory=list)
    cell_seconds: list[float] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def live_containers(blob_dir: str) -> int:
    """Worker processes of this agent (their environment names its blob dir); bubblewrap parents not counted."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"remote_agent.worker" not in cmdline or cmdline.startswith(b"bwrap"):
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"NBMODAL_BLOB_DIR={blob_dir}".encode() in f.read():
                    count += 1
        except OSError:
            continue
    return count


def notebook(k: int, args: argparse.Namespace, deadline: list[float], tally: Tally, ready: threading.Barrier) -> None:
    """One kernel: set up, wait for all, then remote and map cells in turn until ``deadline[0]``."""
    from kernels import kernel

    with kernel() as kern:
        out = kern.execute(SETUP.format(k=k), timeout=120)
        if out["error"]:
            tally.errors.append(f"k{k} setup: {out['error']}")
            return
        ready.wait()  # its action has set the deadline
        c = 0
        while time.monotonic() < deadline[0]:
            run_cell(kern, k, c, args, tally, "remote")
            if time.monotonic() >= deadline[0]:
                break
            run_cell(kern, k, c, args, tally, "map")
            c += 1


def run_cell(kern, k: int, c: int, args: argparse.Namespace, tally: Tally, kind: str) -> None:
    code = (REMOTE_CELL.format(k=k, c=c, lines=args.lines) if kind == "remote"
            else MAP_CELL.format(k=k, c=c, inputs=args.inputs))
    started = time.monotonic()
    msg_id = kern.start(code)
    try:
        out = kern.collect(msg_id, timeout=args.cell_timeout)
    except TimeoutError:
        tally.stuck += 1
        tally.errors.append(f"k{k} c{c} {kind}: not done within {args.cell_timeout:g} s")
        kern.interrupt()
        try:
            kern.collect(msg_id, timeout=60)
        except TimeoutError:
            tally.errors.append(f"k{k} c{c} {kind}: still not done 60 s after an interrupt")
        return
    tally.cell_seconds.append(time.monotonic() - started)
    if out["error"]:
        tally.errors.append(f"k{k} c{c} {kind}: {out['error']['ename']}: {out['error']['evalue']}")
    lines = out["stdout"].splitlines()
    if kind == "remote":
        tally.remote_cells += 1
        expected = [f"k{k} c{c} line {i}" for i in range(args.lines)]
        if lines != expected:
            missing = len(set(expected) - set(lines))
            tally.lost_lines += max(missing, 1)  # out of order with nothing missing still counts
            tally.errors.append(f"k{k} c{c} remote: {missing} of {args.lines} lines missing"
                                + ("" if missing else " (all there, out of order)"))
        return
    tally.map_cells += 1
    tally.map_inputs += args.inputs
    result = f"map k{k} c{c} right=True n={args.inputs}"
    printed = {line for line in lines if line.startswith("input ")}
    missing = args.inputs - len(printed & {f"input {x}" for x in range(args.inputs)})
    if result not in lines:
        tally.lost_lines += 1
        tally.errors.append(f"k{k} c{c} map: no {result!r} in {out['stdout'][-300:]!r}")
    if missing:
        tally.lost_lines += missing
        tally.errors.append(f"k{k} c{c} map: {missing} of {args.inputs} inputs' lines missing")


def sample(agent_pid: int, blob_dir: str, every_s: float, stop: threading.Event, into: list[dict]) -> None:
    started = time.monotonic()
    while True:
        try:
            into.append({"t": round(time.monotonic() - started, 1), "rss_mib": round(rss_mib(agent_pid), 1),
                         "containers": live_containers(blob_dir)})
        except OSError:
            into.append({"t": round(time.monotonic() - started, 1), "rss_mib": None, "containers": None})
        if stop.wait(every_s):
            return


def summarize(args: argparse.Namespace, tallies: list[Tally], samples: list[dict], warmup_s: float,
              wall_s: float) -> dict:
    rss = [s for s in samples if s["rss_mib"] is not None]
    after_warmup = next((s for s in rss if s["t"] >= warmup_s), rss[-1] if rss else None)
    seconds = sorted(t for tally in tallies for t in tally.cell_seconds)
    return {
        "notebooks": args.notebooks, "minutes": args.minutes, "wall_s": round(wall_s, 1),
        "lines_per_remote_cell": args.lines, "inputs_per_map": args.inputs,
        "cell_timeout_s": args.cell_timeout,
        "remote_cells": sum(t.remote_cells for t in tallies), "map_cells": sum(t.map_cells for t in tallies),
        "map_inputs": sum(t.map_inputs for t in tallies),
        "lost_lines": sum(t.lost_lines for t in tallies), "stuck_runs": sum(t.stuck for t in tallies),
        "cell_s_p50": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "cell_s_max": round(seconds[-1], 2) if seconds else None,
        "agent_rss_mib": {
            "min": min(s["rss_mib"] for s in rss) if rss else None,
            "after_warmup": after_warmup["rss_mib"] if after_warmup else None,
            "warmup_s": warmup_s,
            "end": rss[-1]["rss_mib"] if rss else None,
            "max": max(s["rss_mib"] for s in rss) if rss else None,
        },
        "containers_max": max((s["containers"] or 0 for s in samples), default=0),
        "errors": [e for t in tallies for e in t.errors][:50],
        "samples": samples,
    }


def markdown(summary: dict) -> str:
    rss = summary["agent_rss_mib"]
    lines = [
        f"# Load: {summary['notebooks']} notebooks, {summary['minutes']:g} min against one agent",
        "",
        "| cells (%%remote + map) | map inputs | lost lines | stuck runs | cell p50 / max (s) "
        "| agent RSS min / after warm-up / end / max (MiB) | containers max |",
        "|---|---|---|---|---|---|---|",
        f"| {summary['remote_cells']} + {summary['map_cells']} | {summary['map_inputs']} | {summary['lost_lines']} "
        f"| {summary['stuck_runs']} | {summary['cell_s_p50']} / {summary['cell_s_max']} | {rss['min']} / "
        f"{rss['after_warmup']} (at {rss['warmup_s']:g} s) / {rss['end']} / {rss['max']} "
        f"| {summary['containers_max']} |",
        "",
        "RSS over time (s: MiB): " + ", ".join(f"{s['t']:g}: {s['rss_mib']}" for s in summary["samples"]),
    ]
    if summary["errors"]:
        lines += ["", "Errors:", *[f"- {e}" for e in summary["errors"]]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the notebooks loop (default 10)")
    parser.add_argument("--notebooks", type=int, default=8)
    parser.add_argument("--lines", type=int, default=200, help="numbered lines each %%remote cell prints")
    parser.add_argument("--inputs", type=int, default=20, help="inputs of each map")
    parser.add_argument("--cell-timeout", type=float, default=120.0, help="seconds before a cell counts as stuck")
    parser.add_argument("--sample-s", type=float, default=3.0, help="seconds between RSS samples")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="nbmodal-load-"))
    os.environ["NBMODAL_HOME"] = str(home)  # the kernels inherit it: one private agent for all of them
    from nbmodal._runtime.local_agent import start_local_agent, stop_local_agent

    state_dir = home / "agent"
    address = start_local_agent(state_dir)
    print(f"agent pid {address.pid} in {state_dir}", file=sys.stderr, flush=True)
    samples: list[dict] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(address.pid, str(state_dir / "blobs"), args.sample_s, stop,
                                                    samples), daemon=True)
    tallies = [Tally() for _ in range(args.notebooks)]
    deadline = [0.0]
    started = time.monotonic()

    def start_clock() -> None:  # all kernels up and set up: the clock starts now
        nonlocal started
        started = time.monotonic()
        deadline[0] = started + args.minutes * 60

    ready = threading.Barrier(args.notebooks + 1, action=start_clock)
    threads: list[threading.Thread] = []
    try:
        sampler.start()

        def start_notebook(k: int) -> None:
            try:
                notebook(k, args, deadline, tallies[k], ready)
            except threading.BrokenBarrierError:
                tallies[k].errors.append(f"k{k}: another notebook failed to start")
            except Exception as exc:  # a notebook that fails counts as an error, the others go on
                tallies[k].errors.append(f"k{k}: {type(exc).__name__}: {exc}")
                ready.abort()

        threads = [threading.Thread(target=start_notebook, args=(k,), name=f"notebook-{k}")
                   for k in range(args.notebooks)]
        for thread in threads:
            thread.start()
        try:
            ready.wait(timeout=300)
        except threading.BrokenBarrierError:
            pass
        print(f"{args.notebooks} notebooks running for {args.minutes:g} min", file=sys.stderr, flush=True)
        for thread in threads:
            thread.join()
        wall_s = time.monotonic() - started
    finally:
        stop.set()
        sampler.join(timeout=10)
        stop_local_agent(state_dir)
        shutil.rmtree(home, ignore_errors=True)

    warmup_s = min(120.0, args.minutes * 60 * 0.2)
    summary = summarize(args, tallies, samples, warmup_s, wall_s)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.results / f"load-{stamp}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.results / f"load-{stamp}.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"written to {args.results}/load-{stamp}.{{json,md}}", file=sys.stderr)
    failed = summary["lost_lines"] or summary["stuck_runs"] or summary["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Markdown comparison of one benchmark run: nbmodal vs ipyparallel, Ray and Dask.

    python bench/summarize.py bench/results/<UTC stamp>

Reads ``nbmodal.json`` (bench_nbmodal.py) and ``ipyparallel.json``,
``ray.json``, ``dask.json`` (../shared/peers/run_all.sh) from the folder and
prints, on stdout, a table of the fields all four measure the same way, with
"nbmodal vs best peer" computed from these files only (so from one run on one
machine), then nbmodal's own figures. A missing or failed file shows as n/a.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PEERS = ("ipyparallel", "ray", "dask")
LOWER, HIGHER = "lower", "higher"
# (field, label, which is better); same fields and meaning in every JSON file
COMMON_ROWS = [
    ("rtt_p50_ms", "warm RTT p50, ms", LOWER),
    ("rtt_p99_ms", "warm RTT p99, ms", LOWER),
    ("stream_first_byte_ms", "stream 1st line, print(), ms", LOWER),
    ("stream_first_byte_flush_ms", "stream 1st line, print(flush=True), ms", LOWER),
    ("array_roundtrip_gbps", "256 MiB array round trip, GB/s (median of 5)", HIGHER),
    ("array_roundtrip_best_gbps", "256 MiB array round trip, GB/s (best of 5)", HIGHER),
    ("cold_start_s", "cold start, s (median of 3)", LOWER),
    ("map_tasks_per_s", "map of 10,000 trivial inputs, tasks/s", HIGHER),
]
NBMODAL_ROWS = [
    ("map_per_input_us", "map: amortized cost per input, µs"),
    ("cell_warm_ms_p50", "warm empty `%%remote` cell, p50, ms"),
    ("cell_warm_ms_p99", "warm empty `%%remote` cell, p99, ms"),
    ("cell_local_baseline_ms_p50", "local `pass` cell (same kernel), p50, ms"),
    ("cell_remote_overhead_ms_p50", "`%%remote` overhead over a local cell, p50, ms"),
    ("cell_first_remote_ms", "first `%%remote` cell of the kernel, ms"),
    ("container_cold_start_ms", "call on a new container (running agent), ms"),
    ("container_warm_ms", "same call on a warm container, ms"),
    ("container_gpu_cold_start_ms", "call on a new container with gpu=H100 (fake card), ms"),
    ("print_to_local_ms", "remote print() -> local sys.stdout, ms"),
    ("array_roundtrip_64mib_gbps", "64 MiB array round trip, GB/s (median)"),
    ("agent_rss_mib_after_arrays", "agent RSS after the array calls, MiB"),
]


def load(folder: Path, name: str) -> dict:
    try:
        return json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError) as exc:
        return {"errors": [f"no usable {name}.json: {exc}"]}


def fmt(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def versus_best(nb, peers: dict[str, float | None], better: str) -> str:
    """'3.1x faster than ray' / '1.4x slower than dask': nbmodal against the best peer value."""
    known = {name: v for name, v in peers.items() if isinstance(v, (int, float)) and v > 0}
    if not isinstance(nb, (int, float)) or nb <= 0 or not known:
        return "n/a"
    pick = min if better == LOWER else max
    best_name = pick(known, key=known.get)
    best = known[best_name]
    factor = best / nb if better == LOWER else nb / best
    if abs(factor - 1) < 0.005:
        return f"same as {best_name}"
    return (f"{factor:.2f}x faster than {best_name}" if factor > 1
            else f"{1 / factor:.2f}x slower than {best_name}")


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)])


def common_table(nb: dict, peers: dict[str, dict]) -> str:
    rows = []
    for key, label, better in COMMON_ROWS:
        values = {name: res.get(key) for name, res in peers.items()}
        rows.append([label, fmt(nb.get(key)), *(fmt(values[p]) if key in peers[p] else "n/a" for p in PEERS),
                     versus_best(nb.get(key), values, better)])
    return table(["metric", "nbmodal", *PEERS, "nbmodal vs best peer"], rows)


def nbmodal_table(nb: dict) -> str:
    rows = [[label, fmt(nb.get(key))] for key, label in NBMODAL_ROWS]
    breakdown = nb.get("cold_start_breakdown_median_s") or {}
    rows.append(["cold start: import / first call / agent up, s",
                 " / ".join(fmt(breakdown.get(k)) for k in ("import_s", "first_call_s", "agent_up_s"))])
    return table(["nbmodal only", "value"], rows)


def context(folder: Path, nb: dict, peers: dict[str, dict]) -> str:
    machine = nb.get("machine") or {}
    lines = [f"- machine: {machine.get('cpu_model')}, {machine.get('nproc')} cores, {machine.get('uname_m')}, "
             f"{machine.get('mem_total_gib')} GiB; nbmodal run at {nb.get('date')}"]
    source = nb.get("source") or {}
    if source:
        dirty = " + uncommitted changes" if source.get("git_dirty") else ""
        lines.append(f"- nbmodal source: git {source.get('git_head')}{dirty}, sources sha256 "
                     f"{source.get('sources_sha256')} ({source.get('root')})")
    uptime = folder / "uptime.txt"
    if uptime.exists():
        lines += [f"- peers: {line.strip()}" for line in uptime.read_text().splitlines() if line.strip()]
    if nb.get("quick"):
        lines.append("- WARNING: nbmodal ran with --quick (reduced counts): not for comparison")
    for name, res in [("nbmodal", nb), *peers.items()]:
        versions = ", ".join(f"{k} {v}" for k, v in (res.get("versions") or {}).items())
        lines.append(f"- {name}: load avg {res.get('loadavg_start')} -> {res.get('loadavg_end')}; "
                     f"{res.get('elapsed_s')} s; {versions or 'no versions'}")
        lines += [f"  - ERROR: {e}" for e in res.get("errors", [])]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(sys.argv[1])
    nb = load(folder, "nbmodal")
    peers = {name: load(folder, name) for name in PEERS}
    print(f"Results from `{folder}`\n")
    print(common_table(nb, peers))
    print()
    print(nbmodal_table(nb))
    print()
    print(context(folder, nb, peers))
    return 0


if __name__ == "__main__":
    sys.exit(main())

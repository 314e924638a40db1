#!/usr/bin/env bash
# Benchmark nbmodal, then the peers (ipyparallel, Ray, Dask) on the same machine,
# and print a Markdown comparison.
#   bash bench/run_bench.sh              (about 1.5 min for nbmodal + about 5 min for the peers)
#   bash bench/run_bench.sh --no-peers   (nbmodal only)
#   bash bench/run_bench.sh --quick      (nbmodal smoke test with reduced counts; implies --no-peers)
# Env: PYTHON (nbmodal's interpreter, default <repo>/.venv/bin/python),
#      BENCH_OUT (result folder, default bench/results/<UTC stamp>/),
#      plus the peers' own (PEERS_PYTHON, PEERS_ONLY; see ../shared/peers/README.md).
# Results: nbmodal.json, <peer>.json, *.stderr.log, summary.md in the result folder.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
SHARED="$(dirname "$REPO")/shared"
PY="${PYTHON:-$REPO/.venv/bin/python}"
OUT="${BENCH_OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}"

QUICK="" PEERS=1
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK="--quick"; PEERS="" ;;
    --no-peers) PEERS="" ;;
    *) echo "usage: $0 [--quick] [--no-peers]" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"

echo "nbmodal: running bench_nbmodal.py $QUICK ..." >&2
ps -eo pid,pcpu,etime,args --sort=-pcpu | head -6 | cut -c1-150 >"$OUT/nbmodal.ps_before.txt"
# bench_nbmodal.py stops itself within 225 s; the timeout is the backstop.
timeout -k 10 240 "$PY" "$HERE/bench_nbmodal.py" $QUICK >"$OUT/nbmodal.json" 2>"$OUT/nbmodal.stderr.log"
echo "  bench_nbmodal.py rc=$?" >&2

if [ -n "$PEERS" ]; then
  PEERS_OUT="$OUT" bash "$SHARED/peers/run_all.sh" >"$OUT/peers_table.txt"
  echo "  peers rc=$?" >&2
fi

"$PY" "$HERE/summarize.py" "$OUT" | tee "$OUT/summary.md"

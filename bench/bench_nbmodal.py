#!/usr/bin/env python
"""Benchmark of nbmodal on its embedded local agent, measured like the peers.

    python bench/bench_nbmodal.py [--quick] > nbmodal.json

Prints ONE JSON object on stdout; logs, echoed remote prints and child output
go to stderr. The methodology (counts, nearest-rank percentiles, stdout
protection, deadline, process bookkeeping, cold-start driver, live-output
sink) comes from the peers' helpers in ../shared/peers/_common.py, so the
common fields compare one to one with ipyparallel, Ray and Dask.

Everything runs against a fresh, private state dir (NBMODAL_HOME is a new
temp dir, set before nbmodal is imported); the agent is stopped and the
kernel killed at the end, whatever happens. ``--quick`` cuts every count
down for a smoke test; its figures are not for comparison.

``--cold-once`` is internal: one cold start in a fresh interpreter.

``--only NAME[,NAME]`` runs only those sections (cold, rtt, map, cells, containers, stream, arrays).

Bytecode: every process measured (this one, the cold-start children, the agent, its containers, the
kernel) reads compiled bytecode from a private ``PYTHONPYCACHEPREFIX``, filled before the first
measurement, as an installed package (and each peer's site-packages) has it. An environment with
``PYTHONDONTWRITEBYTECODE=1`` and an editable install would otherwise compile every nbmodal module
in every new process, and the cold start would measure the compiler. ``--no-bytecode-cache`` measures
that way; the JSON says which (``bytecode``).
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

PEERS_DIR = Path(os.environ.get("NBMODAL_PEERS_DIR")
                 or Path(__file__).resolve().parents[2] / "shared" / "peers")
sys.path.insert(0, str(PEERS_DIR))
import _common as C  # noqa: E402  (the peers' timing/stdout/deadline helpers; read-only)

REMOTE_CELL = "%%remote\npass"
LOCAL_CELL = "pass"
CELL_TIMEOUT_S = 60
ARRAY_SIZES = (("array_roundtrip", C.ARRAY_BYTES), ("array_roundtrip_64mib", 64 * 2**20))
VERSION_PKGS = ["nbmodal", "grpcio", "protobuf", "cloudpickle", "numpy", "ipykernel", "jupyter_client"]


@dataclass(frozen=True)
class Counts:
    """How many of each measurement: the peers' counts, or a smoke-test fraction."""

    rtt_warmup: int = C.RTT_WARMUP
    rtt_calls: int = C.RTT_CALLS
    cell_warmup: int = 20
    cell_calls: int = 200
    cold_starts: int = C.COLD_STARTS
    container_trials: int = 5
    stream_trials: int = C.STREAM_TRIALS
    array_repeats: int = C.ARRAY_REPEATS


FULL = Counts()
QUICK = Counts(rtt_warmup=10, rtt_calls=200, cell_warmup=3, cell_calls=20, cold_starts=1,
               container_trials=2, stream_trials=2, array_repeats=2)


# ---- remote-side functions: defined in __main__ so that they travel by value,
# ---- as the peers' do. They are wrapped with app.function() once nbmodal is imported.
def same(x):
    return x


def trivial():
    return 1


def ident(a):
    return a


def printer(marker, flush, sleep_s):
    import time

    print(f"{marker} {time.time()!r}", flush=flush)  # the remote wall clock, just before print()
    time.sleep(sleep_s)
    return 1


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def ms_stats(prefix: str, samples_ms: list[float]) -> dict:
    """p50/p99 (nearest rank, as the peers) and mean of a list of milliseconds."""
    return {f"{prefix}_p50": C.r(C.pct(samples_ms, 50)), f"{prefix}_p99": C.r(C.pct(samples_ms, 99)),
            f"{prefix}_mean": C.r(statistics.fmean(samples_ms)) if samples_ms else None}


def machine_info() -> dict:
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    mem_kib = _proc_status_kib("/proc/meminfo", "MemTotal")
    return {"nproc": len(os.sched_getaffinity(0)), "uname_m": platform.machine(), "cpu_model": cpu_model,
            "mem_total_gib": C.r(mem_kib / 2**20, 1) if mem_kib else None, "kernel": platform.release()}


def source_fingerprint() -> dict:
    """Which code was measured: git HEAD (if any) and a digest of the imported
    nbmodal/remote_agent sources (the tree may be uncommitted or changing)."""
    import hashlib
    import subprocess

    import nbmodal

    root = Path(nbmodal.__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(p for pkg in ("nbmodal", "remote_agent") for p in (root / pkg).rglob("*")
                       if p.suffix in (".py", ".proto")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "nbmodal", "remote_agent")) if head else None
    return {"git_head": head or None, "git_dirty": dirty, "sources_sha256": digest.hexdigest()[:16],
            "root": str(root)}


def _proc_status_kib(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def agent_rss_mib() -> float | None:
    """Resident memory of the running local agent process (not its containers)."""
    from nbmodal._runtime.local_agent import read_agent_json

    address = read_agent_json()
    kib = _proc_status_kib(f"/proc/{address.pid}/status", "VmRSS") if address else None
    return C.r(kib / 1024, 1) if kib else None


def stop_agent() -> None:
    """Stop the agent of this NBMODAL_HOME (and its containers), if nbmodal was imported."""
    if "nbmodal" not in sys.modules:
        return
    try:
        import nbmodal.commands

        C.log(f"[nbmodal] {nbmodal.commands.agent_stop()}")
    except Exception as exc:  # noqa: BLE001
        C.log(f"[nbmodal] agent_stop failed: {exc!r}")


# ---------------------------------------------------------------------------
# 3. Cold start (fresh interpreter, no agent running)
# ---------------------------------------------------------------------------
def cold_once() -> None:
    """One cold start, run as ``bench_nbmodal.py --cold-once`` in a fresh interpreter.

    With a fresh NBMODAL_HOME (so no agent runs), the clock starts before
    ``import nbmodal`` and stops when the first ``trivial.remote()`` returns;
    interpreter start-up and teardown are outside it (as the peers'). The first
    call starts the agent daemon, which prewarms one container. Breakdown:
    ``import_s``; ``first_call_s`` (agent start + connect + container + run),
    of which ``agent_up_s`` is until the agent wrote agent.json (its clock).
    """
    home = tempfile.mkdtemp(prefix="nbmodal-bench-cold-")
    os.environ["NBMODAL_HOME"] = home
    tag = C.push_tag()
    out: dict = {"cold_start_s": None}
    t0 = time.perf_counter()
    try:
        import nbmodal

        t1 = time.perf_counter()
        fn = nbmodal.App("bench").function()(trivial)
        wall_before_call = time.time()
        assert fn.remote() == 1
        t2 = time.perf_counter()
        out.update(cold_start_s=t2 - t0, import_s=t1 - t0, first_call_s=t2 - t1,
                   agent_up_s=_agent_started_at() - wall_before_call)
    except BaseException as exc:  # noqa: BLE001  (incl. Deadline)
        out["error"] = repr(exc)
    finally:
        t3 = time.perf_counter()
        stop_agent()
        out["teardown_s"] = time.perf_counter() - t3
        out["leftover_processes_killed"] = C.reap_leftovers(tag)
        shutil.rmtree(home, ignore_errors=True)
    C.emit(out)


def _agent_started_at() -> float:
    import json

    from nbmodal.config import local_agent_dir

    return json.loads((local_agent_dir() / "agent.json").read_text())["started"]


def measure_cold_starts(n: int, errors: list[str]) -> dict:
    """Median of ``n`` runs of :func:`cold_once`, driven by the peers' run_cold_starts."""
    samples, details, errs = C.run_cold_starts(os.path.abspath(__file__), n=n)
    errors.extend(errs)
    killed = [p for d in details for p in d.get("leftover_processes_killed", [])]
    if killed:
        errors.append(f"cold-start children left processes (killed): {killed}")
    keys = ("import_s", "first_call_s", "agent_up_s", "teardown_s", "subprocess_wall_s")
    return {
        "cold_start_s": C.r(C.median(samples)),
        "cold_start_samples_s": [C.r(x) for x in samples],
        "cold_start_breakdown_median_s": {
            k: C.r(C.median([d[k] for d in details if d.get(k) is not None])) for k in keys},
    }


# ---------------------------------------------------------------------------
# 1. Warm round trip
# ---------------------------------------------------------------------------
def measure_rtt(fns: dict, counts: Counts) -> dict:
    """Warm synchronous ``trivial.remote()``: ``rtt_warmup`` calls, then
    ``rtt_calls`` timed ones (perf_counter around each call); nearest-rank p50/p99."""
    ms = C.time_calls(fns["trivial"].remote, counts.rtt_calls, counts.rtt_warmup)
    quarter = max(1, len(ms) // 4)
    return {"rtt_p50_ms": C.r(C.pct(ms, 50)), "rtt_p99_ms": C.r(C.pct(ms, 99)),
            "rtt_mean_ms": C.r(statistics.fmean(ms)), "rtt_calls": len(ms),
            # drift over the run (e.g. per-run state the agent keeps): first vs last quarter
            "rtt_p50_first_quarter_ms": C.r(C.pct(ms[:quarter], 50)),
            "rtt_p50_last_quarter_ms": C.r(C.pct(ms[-quarter:], 50))}


def measure_map(fns: dict) -> dict:
    """``same.map(range(10000))`` as the peers' map: 10,000 divided by the wall time; median of up
    to 3 runs, none started after 20 s of map time. ``map_per_input_us`` is its inverse."""
    samples, spent = [], 0.0
    for _ in range(3):
        if spent > 20:
            break
        started = time.perf_counter()
        out = list(fns["same"].map(range(10_000)))
        elapsed = time.perf_counter() - started
        assert out == list(range(10_000))
        samples.append(10_000 / elapsed)
        spent += elapsed
    rate = C.median(samples)
    return {"map_tasks_per_s": C.r(rate, 1), "map_tasks_per_s_samples": [C.r(x, 1) for x in samples],
            "map_per_input_us": C.r(1e6 / rate, 1)}


# ---------------------------------------------------------------------------
# 2. %%remote cells in a real Jupyter kernel
# ---------------------------------------------------------------------------
def start_kernel(workdir: str):
    """A real IPython kernel of this interpreter (its own kernelspec, connection
    file and IPYTHONDIR under ``workdir``), with this process's NBMODAL_HOME."""
    import json

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = Path(workdir) / "kernels" / "nbmodal-bench"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nbmodal bench", "language": "python"}))
    km = KernelManager(kernel_name="nbmodal-bench",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]),
                       connection_file=str(Path(workdir) / "connection.json"))
    env = dict(os.environ, IPYTHONDIR=str(Path(workdir) / "ipython"))
    km.start_kernel(env=env, cwd=workdir)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def stop_kernel(km, kc) -> None:
    try:
        kc.stop_channels()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def time_cell(kc, code: str) -> float:
    """Milliseconds from sending the execute_request until its execute_reply
    arrives (client side); then waits, untimed, for the kernel to go idle."""
    t = time.perf_counter()
    msg_id = kc.execute(code)
    while True:
        reply = kc.get_shell_msg(timeout=CELL_TIMEOUT_S)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed_ms = (time.perf_counter() - t) * 1e3
    _wait_idle(kc, msg_id)
    if reply["content"]["status"] != "ok":
        content = reply["content"]
        raise RuntimeError(f"cell {code!r} failed: {content.get('ename')}: {content.get('evalue')}")
    return elapsed_ms


def _wait_idle(kc, msg_id: str) -> None:
    while True:
        msg = kc.get_iopub_msg(timeout=CELL_TIMEOUT_S)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            return


def measure_cells(counts: Counts, workdir: str) -> dict:
    """A warm empty ``%%remote`` cell vs a local ``pass`` cell, in one real kernel.

    After ``%load_ext nbmodal`` and a first (timed, reported apart) remote cell,
    ``cell_warmup`` pairs are run untimed, then ``cell_calls`` pairs timed; each
    pair is one remote and one local cell, so both see the same conditions.
    """
    km, kc = start_kernel(workdir)
    try:
        time_cell(kc, "%load_ext nbmodal")
        first_ms = time_cell(kc, REMOTE_CELL)
        remote, local = [], []
        for i in range(counts.cell_warmup + counts.cell_calls):
            r_ms, l_ms = time_cell(kc, REMOTE_CELL), time_cell(kc, LOCAL_CELL)
            if i >= counts.cell_warmup:
                remote.append(r_ms)
                local.append(l_ms)
    finally:
        stop_kernel(km, kc)
    res = {"cell_first_remote_ms": C.r(first_ms), "cell_calls": len(remote)}
    res.update(ms_stats("cell_warm_ms", remote))
    res.update(ms_stats("cell_local_baseline_ms", local))
    res["cell_remote_overhead_ms_p50"] = C.r(C.pct(remote, 50) - C.pct(local, 50))
    return res


# ---------------------------------------------------------------------------
# 4. Container cold start on a running agent
# ---------------------------------------------------------------------------
class _NullSink:
    """An OutputSink that drops output (the function prints nothing anyway)."""

    def output(self, stream, data):
        pass

    def display(self, data, metadata, execute_result):
        pass

    def item(self, item):
        pass

    def notice(self, text):
        C.log(f"[nbmodal] notice: {text}")

    def close(self):
        pass


def run_on_spec(target, spec) -> float:
    """Milliseconds for one ``trivial`` run with container spec ``spec``, through
    the low-level client: build the RunRequest, follow the run, unpickle the result."""
    from nbmodal import serialization
    from nbmodal._runtime.client import CLIENT_PYTHON
    from nbmodal._runtime.execution import RunFollower
    from nbmodal.results import function_result, raise_for_state
    from nbmodal_wire import pb

    t = time.perf_counter()
    request = pb.RunRequest(kind=pb.FUNCTION, label="trivial()", client_python=CLIENT_PYTHON, spec=spec,
                            payload=serialization.dumps((trivial, (), {})))
    finished = RunFollower(target, _NullSink(), 10).start(request)
    raise_for_state(finished)
    assert function_result(finished, fetch_blob=None) == 1  # a small result: inline, no blob
    return (time.perf_counter() - t) * 1e3


def measure_containers(counts: Counts) -> dict:
    """Container start on a running agent. Each trial uses a spec no container has
    (env BENCH_NONCE=<unique>), so the agent must start one: ``container_cold_start_ms``
    is the whole call, nothing subtracted. The same call is then repeated at once
    with the same spec, now served by that warm container: ``container_warm_ms``."""
    from nbmodal_wire import pb

    from nbmodal._runtime.connection import connection

    target = connection("local")
    cold, warm, gpu_cold = [], [], []
    for i in range(counts.container_trials):
        spec = pb.ContainerSpec(env={"BENCH_NONCE": f"{os.getpid()}-{i}-{time.time_ns()}"})
        cold.append(run_on_spec(target, spec))
        warm.append(run_on_spec(target, spec))
        # The same with a GPU request: allocation decision + container start on a free (fake) card.
        gpu_spec = pb.ContainerSpec(gpu="H100", env={"BENCH_NONCE": f"gpu-{os.getpid()}-{i}-{time.time_ns()}"})
        gpu_cold.append(run_on_spec(target, gpu_spec))
    return {"container_cold_start_ms": C.r(C.median(cold)), "container_warm_ms": C.r(C.median(warm)),
            "container_gpu_cold_start_ms": C.r(C.median(gpu_cold)),
            "container_cold_start_samples_ms": [C.r(x) for x in cold],
            "container_warm_samples_ms": [C.r(x) for x in warm],
            "container_gpu_cold_start_samples_ms": [C.r(x) for x in gpu_cold]}


# ---------------------------------------------------------------------------
# 5. Live output
# ---------------------------------------------------------------------------
class StampSink(C.MarkerSink):
    """The peers' MarkerSink, also keeping for each marker the wall-clock time
    and the text of the write that carried it (to read the remote timestamp)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.wall: dict[str, float] = {}
        self.text: dict[str, str] = {}

    def write(self, s):
        wall = time.time()
        with self.lock:
            hits = [m for m in self.watch if m in s]
        for m in hits:
            self.wall.setdefault(m, wall)
            self.text.setdefault(m, s)
        return super().write(s)


class hook_stdout:
    """Context manager: sys.stdout replaced by a StampSink, restored afterwards."""

    def __enter__(self) -> StampSink:
        self._saved = sys.stdout
        sys.stdout = self.sink = StampSink(sys.stdout)
        return self.sink

    def __exit__(self, *exc) -> bool:
        sys.stdout = self._saved
        return False


def stream_trial(printer_fn, marker: str, flush: bool) -> dict | None:
    """One ``printer.remote(marker, flush, 1 s)``: when its line reached sys.stdout,
    counted from the call (``first_ms``) and from the remote print() (``to_local_ms``)."""
    with hook_stdout() as sink:
        sink.expect(marker)
        t_call = time.perf_counter()
        printer_fn.remote(marker, flush, C.STREAM_SLEEP_S)
        t_done = time.perf_counter()
        C.wait_marker(sink, marker, time.perf_counter() + 3.0)
    t_seen = sink.seen.get(marker)
    if t_seen is None:
        return None
    stamp = re.search(re.escape(marker) + r" ([0-9.]+)", sink.text[marker])
    return {"first_ms": (t_seen - t_call) * 1e3,
            "to_local_ms": (sink.wall[marker] - float(stamp.group(1))) * 1e3 if stamp else None,
            # the remote function keeps running STREAM_SLEEP_S after printing:
            "live": t_seen < t_done - 0.5 * C.STREAM_SLEEP_S}


def measure_stream(fns: dict, counts: Counts) -> dict:
    """First line printed remotely with builtin print(), as the peers measure it:
    the time from the call until the line is written to the client's sys.stdout
    (median of ``stream_trials``, each after a random 0-250 ms pause; a trial
    counts only if the line arrives well before the result). ``_flush_ms`` uses
    print(flush=True). ``print_to_local_ms``: from the remote ``time.time()`` taken
    just before print() to the local write (same machine, same clock), no-flush trials."""
    res: dict = {}
    for flush in (False, True):
        trials = []
        for i in range(counts.stream_trials):
            time.sleep(random.uniform(0.0, 0.25))  # decorrelate from any periodic timer
            marker = f"NBMODALMARK-{int(flush)}-{i}-{os.getpid()}-{time.time_ns()}"
            trials.append(stream_trial(fns["printer"], marker, flush))
        seen = [t for t in trials if t is not None]
        live = bool(seen) and len(seen) == len(trials) and all(t["live"] for t in seen)
        key = "stream_first_byte_flush_ms" if flush else "stream_first_byte_ms"
        first = [t["first_ms"] for t in seen]
        res[key] = C.r(C.median(first)) if live else None
        res[key + "_samples"] = [C.r(x) for x in first]
        res[key[:-3] + "_live"] = live
        if not flush:
            to_local = [t["to_local_ms"] for t in seen if t["to_local_ms"] is not None]
            res["print_to_local_ms"] = C.r(C.median(to_local))
            res["print_to_local_samples_ms"] = [C.r(x) for x in to_local]
    res["stream_method"] = ("builtin print() in the container -> fd 1 pipe -> reader thread -> "
                            "socket frame to the agent -> Run event -> gRPC stream -> client sys.stdout")
    return res


# ---------------------------------------------------------------------------
# 6. Array round trip
# ---------------------------------------------------------------------------
def measure_arrays(fns: dict, counts: Counts) -> dict:
    """``ident.remote(a)`` for a float64 array of 256 MiB (and 64 MiB): 1 warm-up
    call checked with np.array_equal, then ``array_repeats`` timed calls;
    GB/s = 2 x nbytes / median time (10^9 B per GB); ``_best_gbps`` uses the fastest."""
    import numpy as np

    res: dict = {"agent_rss_mib_before_arrays": agent_rss_mib()}
    for prefix, nbytes in ARRAY_SIZES:
        arr = np.random.default_rng(0).random(nbytes // 8)
        out = fns["ident"].remote(arr)
        assert out.shape == arr.shape and np.array_equal(out, arr), "array round trip mismatch"
        del out
        times = []
        for _ in range(counts.array_repeats):
            t = time.perf_counter()
            out = fns["ident"].remote(arr)
            times.append(time.perf_counter() - t)
            assert out.nbytes == arr.nbytes
            del out
        res[f"{prefix}_gbps"] = C.r(2 * arr.nbytes / C.median(times) / 1e9)
        res[f"{prefix}_best_gbps"] = C.r(2 * arr.nbytes / min(times) / 1e9)
        res[f"{prefix}_samples_s"] = [C.r(x, 4) for x in times]
        res[f"{prefix}_bytes"] = arr.nbytes
        del arr
    res["agent_rss_mib_after_arrays"] = agent_rss_mib()
    return res


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------
SECTIONS = ("cold", "rtt", "map", "cells", "containers", "stream", "arrays")


def selected_sections(argv: list[str]) -> set[str]:
    """The sections ``--only a,b`` names (all without it); a name that isn't one is an error."""
    if "--only" not in argv:
        return set(SECTIONS)
    index = argv.index("--only")
    names = set(argv[index + 1].split(",")) if index + 1 < len(argv) else set()
    unknown = names - set(SECTIONS)
    if not names or unknown:
        raise SystemExit(f"--only takes a comma-separated list of {', '.join(SECTIONS)}; got {sorted(unknown)}")
    return names


def cache_bytecode(workdir: str) -> dict:
    """Point this process and every child at a private bytecode cache and fill it (see the docstring)."""
    import compileall
    import subprocess

    prefix = os.path.join(workdir, "pycache")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.pycache_prefix, sys.dont_write_bytecode = prefix, False
    t = time.perf_counter()
    root = Path(__file__).resolve().parents[1]
    for package in ("nbmodal", "remote_agent", "nbmodal_wire"):
        compileall.compile_dir(str(root / package), quiet=1)
    # The standard library and site-packages modules the client, the agent and a container import.
    warm = ("import nbmodal, IPython, ipykernel.kernelapp, jupyter_client, grpc, remote_agent.daemon, "
            "remote_agent.agent, remote_agent.service, remote_agent.worker.main, remote_agent.worker.zygote")
    subprocess.run([sys.executable, "-c", warm], check=False, capture_output=True, timeout=120)
    return {"bytecode": f"cached ({prefix})", "bytecode_fill_s": C.r(time.perf_counter() - t, 1)}


def run_section(name: str, fn, res: dict, errors: list[str], only: set[str] | None = None,
                key: str = "") -> None:
    """Run one measurement; a failure is recorded and the next section still runs
    (the deadline and Ctrl-C still stop everything). A section ``--only`` left out is skipped."""
    if only is not None and key not in only:
        return
    C.log(f"[nbmodal] {name}")
    t = time.perf_counter()
    try:
        res.update(fn())
    except (C.Deadline, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
        C.log(f"[nbmodal] {name} failed: {exc!r}")
    res.setdefault("section_s", {})[name] = C.r(time.perf_counter() - t, 1)


def bench(counts: Counts, quick: bool, only: set[str] | None = None, bytecode_cache: bool = True) -> None:
    t_script = time.perf_counter()
    tag = C.push_tag()
    res: dict = {
        "system": "nbmodal", "quick": quick,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cold_start_s": None, "rtt_p50_ms": None, "rtt_p99_ms": None,
        "cell_warm_ms_p50": None, "cell_local_baseline_ms_p50": None,
        "container_cold_start_ms": None, "container_warm_ms": None,
        "stream_first_byte_ms": None, "stream_first_byte_flush_ms": None, "print_to_local_ms": None,
        "array_roundtrip_gbps": None, "array_roundtrip_64mib_gbps": None,
        "versions": None, "machine": machine_info(), "counts": asdict(counts),
        "loadavg_start": C.loadavg(),
    }
    errors: list[str] = []
    workdir = tempfile.mkdtemp(prefix="nbmodal-bench-")
    os.environ["NBMODAL_HOME"] = os.path.join(workdir, "home")  # before nbmodal is imported
    os.environ["NBMODAL_FAKE_GPUS"] = "H100:8"  # a declared inventory, for the gpu= container start
    try:
        res.update(cache_bytecode(workdir) if bytecode_cache else {"bytecode": "compiled in each process"})
        # cold starts first, while no agent of ours runs (fresh interpreters, own homes)
        run_section("cold start", lambda: measure_cold_starts(counts.cold_starts, errors), res, errors, only, "cold")

        import nbmodal
        from nbmodal._runtime.connection import get_client

        res["versions"] = C.versions(VERSION_PKGS)
        res["source"] = source_fingerprint()
        app = nbmodal.App("bench")
        fns = {f.__name__: app.function()(f) for f in (trivial, ident, printer, same)}
        assert fns["trivial"].remote() == 1  # starts this run's agent
        res["agent_pid"] = get_client().address.pid
        run_section("rtt", lambda: measure_rtt(fns, counts), res, errors, only, "rtt")
        run_section("map", lambda: measure_map(fns), res, errors, only, "map")
        run_section("cells", lambda: measure_cells(counts, os.path.join(workdir, "kernel")), res, errors, only, "cells")
        run_section("containers", lambda: measure_containers(counts), res, errors, only, "containers")
        run_section("stream", lambda: measure_stream(fns, counts), res, errors, only, "stream")
        run_section("arrays", lambda: measure_arrays(fns, counts), res, errors, only, "arrays")
    except BaseException as exc:  # noqa: BLE001  (incl. Deadline)
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        C.cancel_deadline()  # teardown must not be cut short; agent_stop has its own timeout
        t = time.perf_counter()
        stop_agent()
        res["teardown_s"] = C.r(time.perf_counter() - t)
        res["leftover_processes_killed"] = C.reap_leftovers(tag)
        shutil.rmtree(workdir, ignore_errors=True)
        res["loadavg_end"] = C.loadavg()
        res["elapsed_s"] = C.r(time.perf_counter() - t_script, 1)
        if errors:
            res["errors"] = errors
        C.emit(res)


def main() -> None:
    C.protect_stdout()
    if "--cold-once" in sys.argv:
        C.install_deadline(70)
        cold_once()
        return
    C.install_deadline()  # the peers' 225 s: the whole script stays under 4 min
    quick = "--quick" in sys.argv
    bench(QUICK if quick else FULL, quick, selected_sections(sys.argv), "--no-bytecode-cache" not in sys.argv)


if __name__ == "__main__":
    main()

"""Images on the embedded local agent: container start (spawn vs zygote fork), builds, cached re-use.

    .venv/bin/python bench/bench_images.py [--repeat N] [--build-repeat M] [--json]

Prints a Markdown table (``--json``: also the raw figures on stderr). Each
configuration runs in a child process of this script with its own fresh
``NBMODAL_HOME``, so it gets its own agent, started by the client; the agent
inherits the child's environment, which sets ``NBMODAL_ZYGOTE``. Every agent
started here is stopped at the end and its state dir removed.

1. **Container start from a cached image**, for two images with a heavy
   preload: ``pip_install("numpy").preload("numpy")`` (numpy from PyPI) and a
   synthetic ``slowmod`` whose import sleeps 2 s (a wheel written by
   ``tests/wheelhouse.py``, installed with ``find_links`` and ``--no-index``).
   Method: each sample sends a call through the low-level client
   (``RunRequest`` + ``RunFollower``) with a ``ContainerSpec`` that carries the
   built image and an env var no container has yet (``BENCH_NONCE=<unique>``),
   so the agent must start a new container. The image, and so the zygote
   (keyed by python, image id, preloads, sandbox), stays the same. The function
   stamps ``time.time()`` on its first line (``first line``), then imports the
   preloaded module and stamps again (``module ready``: a no-op import in a
   forked container, the whole import in a spawned one). Both are measured
   from ``time.time()`` just before the request is built, on the same machine
   and clock; nothing is subtracted. ``warm`` is the same call repeated at once
   with the same spec (served by that container). One untimed warm-up start
   per image precedes the samples; in fork mode it is the one that starts the
   zygote, reported as ``first container (zygote start)``. ``spawn`` is an agent
   with ``NBMODAL_ZYGOTE=0`` (``python -m remote_agent.worker`` under
   bubblewrap); ``fork`` the default. Peer in the same run: ``<image venv
   python> -c 'import numpy'`` (resp. ``slowmod``) wall time, the image's own
   interpreter found from the agent's record ``images/built/<id>.json``.
   p50 over ``--repeat`` samples.

2. **First build of a ~15-package image from a warm uv cache.** Fifteen small
   pure-Python packages from PyPI. One untimed build first warms uv's cache
   (the agent uses the user's default uv cache). Then each sample builds
   ``debian_slim().env({"BENCH_NONCE": unique}).pip_install(*PACKAGES)``: the env
   step sits before the pip step, so the pip layer is new each time, but the
   base venv layer (``debian_slim()``, the step before the env step) is cached.
   A second row forces every layer (``force_build=True``: venv + packages).
   Times are wall time of ``client.build_image`` + ``follow_build`` on the
   client; the agent's own ``build_s`` is shown beside. Peers in the same run,
   same packages, caches warmed by one untimed run: ``uv venv`` + ``uv pip
   install`` into a temp dir (the same uv binary the agent uses), and ``python
   -m venv`` + ``pip install`` (pip from its own warm cache; note pip also
   byte-compiles, uv does not). p50 over ``--build-repeat`` samples.

3. **Cached re-use.** (a) the BuildImage RPC round trip for an image the agent
   already has (``client.build_image(spec)`` + ``follow_build``), p50 of 50;
   (b) a second ``ensure_built`` of the same image in the same process (memoized
   client-side: hashes the spec, no RPC), p50 of 1000.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACKAGES = ["requests", "idna", "charset-normalizer", "urllib3", "certifi", "six", "attrs", "packaging",
            "pyparsing", "python-dateutil", "tomli", "typing-extensions", "click", "markupsafe", "jinja2"]
SLOW_IMPORT_S = 2


def log(text: str) -> None:
    print(f"[bench_images] {text}", file=sys.stderr, flush=True)


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def probe(module: str):
    """The function run in the containers: stamps its first line, imports the preload, stamps again."""
    import time as _t
    first = _t.time()
    __import__(module)
    return first, _t.time()


class _NullSink:
    def output(self, stream, data):
        pass

    def display(self, data, metadata, execute_result):
        pass

    def item(self, item):
        pass

    def notice(self, text):
        log(f"notice: {text}")

    def close(self):
        pass


def call(target, spec, module: str) -> tuple[float, float, float]:
    """(first line ms, module ready ms, whole call ms) for one ``probe(module)`` with ``spec``."""
    from nbmodal import serialization
    from nbmodal._runtime.client import CLIENT_PYTHON
    from nbmodal._runtime.execution import RunFollower
    from nbmodal.results import function_result, raise_for_state
    from nbmodal_wire import pb

    t0 = time.time()
    request = pb.RunRequest(kind=pb.FUNCTION, label=f"probe({module})", client_python=CLIENT_PYTHON, spec=spec,
                            payload=serialization.dumps((probe, (module,), {})))
    finished = RunFollower(target, _NullSink(), 10).start(request)
    t_end = time.time()
    raise_for_state(finished)
    first, ready = function_result(finished, fetch_blob=None)
    return (first - t0) * 1e3, (ready - t0) * 1e3, (t_end - t0) * 1e3


def image_python(image_id: str) -> str:
    from nbmodal.config import local_agent_dir

    record = json.loads((local_agent_dir() / "images" / "built" / f"{image_id}.json").read_text())
    return str(Path(record["layer_dir"]) / "venv" / "bin" / "python")


def timed_run(argv: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


# ---------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------
def child_start(args) -> dict:
    """Section 1 on this child's agent (NBMODAL_ZYGOTE set by the parent)."""
    import nbmodal
    from nbmodal._runtime.connection import connection
    from nbmodal._runtime.images import spec_with_image
    from nbmodal_wire import pb

    conn = connection("local")
    images = {
        "numpy": nbmodal.Image.debian_slim().pip_install("numpy").preload("numpy"),
        "slowmod": nbmodal.Image.debian_slim().pip_install(
            "slowmod", find_links=args.wheels, extra_options="--no-index").preload("slowmod"),
    }
    out: dict = {}
    for module, image in images.items():
        t = time.perf_counter()
        base = spec_with_image(pb.ContainerSpec(), image, conn, _NullSink())
        build_s = time.perf_counter() - t
        python = image_python(base.image)
        log(f"{args.mode}: image {module} ready in {build_s:.1f} s ({base.image}), python {python}")

        def spec_for(tag: str):
            spec = pb.ContainerSpec()
            spec.CopyFrom(base)
            spec.env["BENCH_NONCE"] = f"{args.mode}-{module}-{tag}-{time.time_ns()}"
            return spec

        first_container = call(conn, spec_for("warmup"), module)
        first, ready, whole, warm = [], [], [], []
        for i in range(args.repeat):
            spec = spec_for(str(i))
            a, b, c = call(conn, spec, module)
            first.append(a), ready.append(b), whole.append(c)
            warm.append(call(conn, spec, module)[1])
        interp = [timed_run([python, "-c", f"import {module}"]) * 1e3 for _ in range(args.repeat)]
        bare = [timed_run([python, "-c", "pass"]) * 1e3 for _ in range(args.repeat)]
        out[module] = {
            "image_id": base.image, "image_build_s": build_s,
            "first_container_ready_ms": first_container[1],
            "first_line_ms_p50": p50(first), "ready_ms_p50": p50(ready), "call_ms_p50": p50(whole),
            "warm_ready_ms_p50": p50(warm), "interp_import_ms_p50": p50(interp), "interp_bare_ms_p50": p50(bare),
            "ready_samples_ms": [round(x, 1) for x in ready], "first_line_samples_ms": [round(x, 1) for x in first],
        }
        log(f"{args.mode} {module}: {json.dumps({k: v for k, v in out[module].items() if 'samples' not in k})}")
    out["containers"] = len(conn.client().list_containers())
    return out


def child_build(args) -> dict:
    """Sections 2 and 3 on this child's agent."""
    import nbmodal
    from nbmodal._runtime.connection import connection
    from nbmodal._runtime.images import ensure_built, follow_build

    conn = connection("local")
    client = conn.client()

    def build(image) -> tuple[float, object]:
        t = time.perf_counter()
        info = follow_build(client.build_image(image.to_spec()), "bench", "local", None)
        return time.perf_counter() - t, info

    def image_for(tag: str, force: bool = False):
        return nbmodal.Image.debian_slim().env({"BENCH_NONCE": tag}).pip_install(*PACKAGES, force_build=force)

    out: dict = {}
    warm_s, info = build(image_for("warm-cache"))
    log(f"warm-up build: {warm_s:.2f} s, {info.built_steps}/{info.steps} steps")
    fresh, fresh_agent, forced, forced_agent = [], [], [], []
    for i in range(args.build_repeat):
        s, info = build(image_for(f"fresh-{i}-{time.time_ns()}"))
        assert info.built_steps >= 1, info
        fresh.append(s), fresh_agent.append(info.build_s)
        steps_fresh = f"{info.built_steps}/{info.steps}"
        s, info = build(image_for(f"forced-{i}-{time.time_ns()}", force=True))
        forced.append(s), forced_agent.append(info.build_s)
        steps_forced = f"{info.built_steps}/{info.steps}"
    out.update(build_fresh_s_p50=p50(fresh), build_fresh_agent_s_p50=p50(fresh_agent), steps_fresh=steps_fresh,
               build_forced_s_p50=p50(forced), build_forced_agent_s_p50=p50(forced_agent), steps_forced=steps_forced,
               build_fresh_samples_s=[round(x, 3) for x in fresh], build_forced_samples_s=[round(x, 3) for x in forced])
    log(f"builds: {out}")

    # Peers: the raw tools, same packages, same interpreter, caches warm.
    from remote_agent.images import find_uv
    uv = find_uv()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    base = Path(tempfile.mkdtemp(prefix="bench-images-peers-"))

    def uv_once(tag: str) -> float:
        d = base / f"uv-{tag}"
        t = time.perf_counter()
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(d)], check=True, env=env)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(d / "bin" / "python"), *PACKAGES],
                       check=True, env=env)
        return time.perf_counter() - t

    def pip_once(tag: str) -> float:
        d = base / f"pip-{tag}"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(d)], check=True, env=env)
        subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PACKAGES], check=True, env=env)
        return time.perf_counter() - t

    try:
        uv_once("warm"), pip_once("warm")
        uv_s = [uv_once(str(i)) for i in range(args.build_repeat)]
        pip_s = [pip_once(str(i)) for i in range(args.build_repeat)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out.update(uv_s_p50=p50(uv_s), pip_s_p50=p50(pip_s))
    log(f"peers: uv {uv_s}, pip {pip_s}")

    # Section 3: cached re-use.
    image = image_for("warm-cache")
    rpc = [build(image)[0] * 1e3 for _ in range(50)]
    assert build(image)[1].built_steps == 0
    ensure_built(image, conn)  # the first: an RPC; the next ones are memoized
    memo = []
    for _ in range(1000):
        t = time.perf_counter()
        ensure_built(image, conn)
        memo.append((time.perf_counter() - t) * 1e3)
    out.update(cached_rpc_ms_p50=p50(rpc), cached_memo_ms_p50=p50(memo))
    return out


def child_main(args) -> None:
    from nbmodal.commands import agent_stop

    home = os.environ["NBMODAL_HOME"]
    try:
        result = child_start(args) if args.child == "start" else child_build(args)
        print(json.dumps(result))
    finally:
        log(f"{args.child}/{args.mode}: {agent_stop()}")
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------
def run_child(child: str, mode: str, args, wheels: str) -> dict:
    env = dict(os.environ, NBMODAL_HOME=tempfile.mkdtemp(prefix=f"nbmodal-bench-images-{mode}-"))
    env["NBMODAL_ZYGOTE"] = "0" if mode == "spawn" else "1"
    argv = [sys.executable, os.path.abspath(__file__), "--child", child, "--mode", mode, "--wheels", wheels,
            "--repeat", str(args.repeat), "--build-repeat", str(args.build_repeat)]
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt_ms(x: float) -> str:
    return f"{x:,.1f} ms" if x < 10_000 else f"{x / 1e3:.2f} s"


def table(r: dict, args) -> str:
    spawn, fork, b = r["spawn"], r["fork"], r["build"]
    rows = [("metric", "nbmodal", "peer (same run)", "ratio")]
    for module in ("numpy", "slowmod"):
        s, f = spawn[module], fork[module]
        interp = f["interp_import_ms_p50"]
        rows += [
            (f"{module}: container start, spawn (module ready)", fmt_ms(s["ready_ms_p50"]),
             f"`python -c 'import {module}'` {fmt_ms(interp)}", f"{s['ready_ms_p50'] / interp:.2f}×"),
            (f"{module}: container start, fork (module ready)", fmt_ms(f["ready_ms_p50"]),
             f"`python -c 'import {module}'` {fmt_ms(interp)}", f"{f['ready_ms_p50'] / interp:.3f}×"),
            (f"{module}: fork vs spawn", "", "", f"{f['ready_ms_p50'] / s['ready_ms_p50']:.3f}× "
             f"({s['ready_ms_p50'] / f['ready_ms_p50']:.1f}× faster)"),
            (f"{module}: first line, spawn / fork", f"{fmt_ms(s['first_line_ms_p50'])} / "
             f"{fmt_ms(f['first_line_ms_p50'])}", f"`python -c pass` {fmt_ms(f['interp_bare_ms_p50'])}", ""),
            (f"{module}: warm call (module ready), spawn / fork", f"{fmt_ms(s['warm_ready_ms_p50'])} / "
             f"{fmt_ms(f['warm_ready_ms_p50'])}", "", ""),
            (f"{module}: first container of the image (fork: zygote start)", fmt_ms(f["first_container_ready_ms"]),
             f"spawn: {fmt_ms(s['first_container_ready_ms'])}", ""),
        ]
    uv, pip = b["uv_s_p50"], b["pip_s_p50"]
    for label, key, steps in (("new pip layer on cached venv", "build_fresh", b["steps_fresh"]),
                              ("every layer (force_build)", "build_forced", b["steps_forced"])):
        s = b[f"{key}_s_p50"]
        rows.append((f"build 15 packages, warm uv cache: {label} ({steps} steps)",
                     f"{s:.2f} s (agent {b[f'{key}_agent_s_p50']:.2f} s)",
                     f"uv venv + uv pip install {uv:.2f} s; venv + pip install {pip:.2f} s",
                     f"{s / uv:.2f}× uv, {s / pip:.3f}× pip"))
    rows += [
        ("cached image: BuildImage RPC round trip", fmt_ms(b["cached_rpc_ms_p50"]), "", ""),
        ("cached image: 2nd ensure_built (memoized)", f"{b['cached_memo_ms_p50'] * 1e3:.1f} µs", "", ""),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def targets(r: dict) -> str:
    out = []
    for module in ("numpy", "slowmod"):
        x = r["fork"][module]["ready_ms_p50"]
        out.append(f"- Container start ≤ 100 ms with the zygote ({module} preload): "
                   f"{'met' if x <= 100 else 'missed'}, {x:.1f} ms = {x / 100:.2f}× the target.")
    x = r["build"]["build_fresh_s_p50"]
    y = r["build"]["build_forced_s_p50"]
    out.append(f"- First build of 15 packages ≤ 2 s from a warm cache: {'met' if x <= 2 else 'missed'} "
               f"({x:.2f} s = {x / 2:.2f}× the target; every layer rebuilt: {y:.2f} s = {y / 2:.2f}×).")
    x = r["build"]["cached_rpc_ms_p50"]
    out.append(f"- Cached image RPC ≤ 50 ms: {'met' if x <= 50 else 'missed'}, {x:.1f} ms = {x / 50:.3f}× the target.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="container-start samples per image and mode")
    parser.add_argument("--build-repeat", type=int, default=5, help="build samples (and peer installs)")
    parser.add_argument("--json", action="store_true", help="also print the raw figures on stderr")
    parser.add_argument("--child", choices=["start", "build"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fork", help=argparse.SUPPRESS)
    parser.add_argument("--wheels", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    from tests.wheelhouse import build_wheel

    wheels = Path(tempfile.mkdtemp(prefix="bench-images-wheels-"))
    try:
        build_wheel(wheels, "slowmod", "1.0", {"slowmod": "X = 1"}, import_sleep_s=SLOW_IMPORT_S)
        started = time.time()
        result = {"loadavg_start": os.getloadavg()}
        result["spawn"] = run_child("start", "spawn", args, str(wheels))
        result["fork"] = run_child("start", "fork", args, str(wheels))
        result["build"] = run_child("build", "fork", args, str(wheels))
        result["loadavg_end"] = os.getloadavg()
        result["wall_s"] = time.time() - started
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1), file=sys.stderr)
    print(table(result, args))
    print()
    print(targets(result))
    print(f"\n(load average {result['loadavg_start'][0]:.2f} before, {result['loadavg_end'][0]:.2f} after; "
          f"{result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()

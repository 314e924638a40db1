"""A trivial web endpoint three ways, in one run: directly, through the Jupyter proxy, and through `nbmodal forward`.

Starts a private agent (fresh NBMODAL_HOME) and `jupyter server` with nbmodal's extension, serves a
`@fastapi_endpoint` answering {"ok": true} with `with app.run():`, and measures for each path:
p50/p90 latency of sequential GETs (one keep-alive connection) and requests per second with
`--concurrency` keep-alive connections. Paths: `direct` (the container's port on this machine's loopback),
`jupyter-proxy` (<server>/nbmodal/proxy/local/<name>/ with Jupyter's token), `nbmodal-forward`
(`nbmodal forward RUN PORT --local-port N`: on the local agent a relay through a local port, the code
path an SSH host's forward takes minus SSH). Target (issue 15): jupyter-proxy p50 <= 2x direct.

Bounded: --requests per measurement (default 400), everything on 127.0.0.1, stops by itself.
Run: .venv/bin/python bench/bench_web.py [--requests 400] [--concurrency 8]   (JSON on stdout, a table on stderr)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def sequential(url: str, headers: dict[str, str], n: int) -> list[float]:
    """Latencies (ms) of n GETs, one after another, on one keep-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    path = parts.path or "/"
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        times.append((time.perf_counter() - start) * 1000)
        if response.status != 200 or not (b"ok" in body or b"started" in body):
            raise RuntimeError(f"{url}: {response.status} {body[:200]!r}")
    conn.close()
    return times


def throughput(url: str, headers: dict[str, str], n: int, concurrency: int) -> float:
    """Requests per second of n GETs spread over `concurrency` keep-alive connections."""
    per_thread = max(1, n // concurrency)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            sequential(url, headers, per_thread)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return per_thread * concurrency / elapsed


def measure(url: str, headers: dict[str, str], requests: int, concurrency: int) -> dict:
    sequential(url, headers, 20)  # warm-up: connections, imports, the proxy's tunnel list
    latencies = sorted(sequential(url, headers, requests))
    return {"p50_ms": round(statistics.median(latencies), 3),
            "p90_ms": round(latencies[int(len(latencies) * 0.9)], 3),
            "requests_per_s": round(throughput(url, headers, requests, concurrency), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="nbm-bench-web-")
    os.environ["NBMODAL_HOME"] = home
    from jupyterserver import free_port, jupyter_server

    import nbmodal
    from nbmodal._runtime.connection import get_client
    from nbmodal._runtime.local_agent import stop_local_agent
    from nbmodal_wire import pb

    app = nbmodal.App("bench-web")

    @app.function()
    @nbmodal.fastapi_endpoint()
    def ok() -> dict:
        return {"ok": True}

    root = Path(tempfile.mkdtemp(prefix="nbm-bench-web-root-"))
    results: dict = {"requests": args.requests, "concurrency": args.concurrency}
    forward = None
    try:
        with jupyter_server(root) as server:
            os.environ["NBMODAL_WEB_BASE_URL"] = server.url
            with app.run():
                tunnel = next(t for t in get_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
                              if t.live and t.name == "bench-web-ok")
                local_port = free_port()
                forward = subprocess.Popen([sys.executable, "-m", "nbmodal.cli", "forward", tunnel.run_id,
                                            str(tunnel.port), "--local-port", str(local_port)],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert forward.stdout is not None
                while "until Ctrl-C" not in forward.stdout.readline():
                    if forward.poll() is not None:
                        raise RuntimeError("nbmodal forward exited")
                paths = {
                    "direct": (f"http://127.0.0.1:{tunnel.port}/", {}),
                    "jupyter-proxy": (ok.get_web_url(), {"Authorization": f"token {server.token}"}),
                    "nbmodal-forward": (f"http://127.0.0.1:{local_port}/", {}),
                    # What any request through this Jupyter server costs (its own API): the proxy's floor.
                    "jupyter-api-status": (f"{server.url}api/status", {"Authorization": f"token {server.token}"}),
                }
                for name, (url, headers) in paths.items():
                    results[name] = measure(url, headers, args.requests, args.concurrency)
                    print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    finally:
        if forward is not None:
            forward.terminate()
            forward.wait(timeout=30)
        stop_local_agent(Path(home) / "agent")
    direct = results["direct"]["p50_ms"]
    results["proxy_p50_over_direct"] = round(results["jupyter-proxy"]["p50_ms"] / direct, 2)
    results["forward_p50_over_direct"] = round(results["nbmodal-forward"]["p50_ms"] / direct, 2)
    print(json.dumps(results, indent=2))
    print("| path | p50 ms | p90 ms | req/s |\n|---|---|---|---|", file=sys.stderr)
    for name in ("direct", "jupyter-proxy", "nbmodal-forward", "jupyter-api-status"):
        row = results[name]
        print(f"| {name} | {row['p50_ms']} | {row['p90_ms']} | {row['requests_per_s']} |", file=sys.stderr)


if __name__ == "__main__":
    main()

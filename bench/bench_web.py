"""A trivial web endpoint three ways, in one run: directly, through the Jupyter proxy, and through `nbmodal forward`.

Starts a private agent (fresh NBMODAL_HOME) and `jupyter server` with nbmodal's extension, serves a
`@fastapi_endpoint` answering {"ok": true} with `with app.run():`, and measures for each path:
p50/p90 latency of sequential GETs (one keep-alive connection; in --rounds turns over all paths) and
requests per second with
`--concurrency` keep-alive connections. Paths: `direct` (the container's port on this machine's loopback),
`jupyter-proxy` (<server>/nbmodal/proxy/local/<name>/ with Jupyter's token), `jupyter-proxy-cookie` (the
same with the login cookie a browser holds instead), `nbmodal-forward`
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


def login_cookie(url: str, token: dict[str, str]) -> dict[str, str]:
    """The ``Cookie`` header of a logged-in browser: what Jupyter sets on a token-authenticated request."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path, headers=token)
    response = conn.getresponse()
    response.read()
    conn.close()
    cookies = [value.split(";", 1)[0] for key, value in response.getheaders() if key.lower() == "set-cookie"]
    if not cookies:
        raise RuntimeError(f"{url}: no login cookie set")
    return {"Cookie": "; ".join(cookies)}


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


def measure(paths: dict[str, tuple[str, dict[str, str]]], requests: int, concurrency: int, rounds: int) -> dict:
    """Per path: p50/p90 of `requests` sequential GETs, taken in `rounds` turns that go over every path (so
    a load change on a shared machine weighs on all paths alike), then requests per second."""
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    for url, headers in paths.values():
        sequential(url, headers, 20)  # warm-up: connections, imports, the proxy's tunnel list
    for turn in range(rounds):
        for name, (url, headers) in paths.items():
            latencies[name] += sequential(url, headers, requests // rounds + (turn < requests % rounds))
    results = {}
    for name, (url, headers) in paths.items():
        ordered = sorted(latencies[name])
        results[name] = {"p50_ms": round(statistics.median(ordered), 3),
                         "p90_ms": round(ordered[int(len(ordered) * 0.9)], 3),
                         "requests_per_s": round(throughput(url, headers, requests, concurrency), 1)}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    return results


def trivial_endpoint():
    """An App whose one endpoint answers {"ok": true} (tunnel name ``bench-web-ok``), and that endpoint."""
    import nbmodal

    app = nbmodal.App("bench-web")

    @app.function()
    @nbmodal.fastapi_endpoint()
    def ok() -> dict:
        return {"ok": True}

    return app, ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="turns over all paths the sequential GETs take")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="nbm-bench-web-")
    os.environ["NBMODAL_HOME"] = home
    from jupyterserver import free_port, jupyter_server

    from nbmodal._runtime.connection import get_client
    from nbmodal._runtime.local_agent import stop_local_agent
    from nbmodal_wire import pb

    app, ok = trivial_endpoint()
    root = Path(tempfile.mkdtemp(prefix="nbm-bench-web-root-"))
    results: dict = {"requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds}
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
                token = {"Authorization": f"token {server.token}"}
                paths = {
                    "direct": (f"http://127.0.0.1:{tunnel.port}/", {}),
                    "jupyter-proxy": (ok.get_web_url(), token),
                    # As a browser calls it: Jupyter's login cookie instead of the token (cheaper for Jupyter).
                    "jupyter-proxy-cookie": (ok.get_web_url(), login_cookie(server.url + "api/status", token)),
                    "nbmodal-forward": (f"http://127.0.0.1:{local_port}/", {}),
                    # What any request through this Jupyter server costs (its own API): the proxy's floor.
                    "jupyter-api-status": (f"{server.url}api/status", {"Authorization": f"token {server.token}"}),
                }
                results.update(measure(paths, args.requests, args.concurrency, args.rounds))
    finally:
        if forward is not None:
            forward.terminate()
            forward.wait(timeout=30)
        stop_local_agent(Path(home) / "agent")
    direct = results["direct"]["p50_ms"]
    results["proxy_p50_over_direct"] = round(results["jupyter-proxy"]["p50_ms"] / direct, 2)
    results["proxy_cookie_p50_over_direct"] = round(results["jupyter-proxy-cookie"]["p50_ms"] / direct, 2)
    results["forward_p50_over_direct"] = round(results["nbmodal-forward"]["p50_ms"] / direct, 2)
    print(json.dumps(results, indent=2))
    print("| path | p50 ms | p90 ms | req/s |\n|---|---|---|---|", file=sys.stderr)
    for name in ("direct", "jupyter-proxy", "jupyter-proxy-cookie", "nbmodal-forward", "jupyter-api-status"):
        row = results[name]
        print(f"| {name} | {row['p50_ms']} | {row['p90_ms']} | {row['requests_per_s']} |", file=sys.stderr)


if __name__ == "__main__":
    main()

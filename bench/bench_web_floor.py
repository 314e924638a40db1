"""The floor under the Jupyter proxy's latency: what the least a proxied request must do costs, on the same server.

bench/bench_web.py measures nbmodal's proxy against the endpoint hit directly (issue 15's target: proxy p50
<= 2x direct). This measures, in the same Jupyter server and the same run, handlers that do strictly less
(bench/web_floor_ext.py): a tornado handler that makes one GET to the endpoint with aiohttp, or with no
HTTP client library at all (bytes on a kept-alive socket), each with and without Jupyter's authentication,
and no-op handlers for the cost of tornado and of Jupyter's authentication alone. Paths are measured in
--rounds turns over all of them; each path's ratio to direct is the median of its per-turn ratios.

Bounded: --requests sequential GETs per path (default 600), everything on 127.0.0.1, stops by itself.
Run: .venv/bin/python bench/bench_web_floor.py [--requests 600] [--rounds 6]   (JSON on stdout, a table on stderr)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from bench_web import login_cookie, sequential, trivial_endpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="nbm-bench-web-floor-")
    os.environ["NBMODAL_HOME"] = home
    # The server imports web_floor_ext from here.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    from jupyterserver import jupyter_server

    from nbmodal._runtime.connection import get_client
    from nbmodal._runtime.local_agent import stop_local_agent
    from nbmodal_wire import pb

    app, ok = trivial_endpoint()
    root = Path(tempfile.mkdtemp(prefix="nbm-bench-web-floor-root-"))
    results: dict = {"requests": args.requests, "rounds": args.rounds}
    try:
        with jupyter_server(root, extensions=("web_floor_ext",)) as server:
            server_url, token = server.url, server.token
            os.environ["NBMODAL_WEB_BASE_URL"] = server_url
            auth = {"Authorization": f"token {token}"}
            with app.run():
                tunnel = next(t for t in get_client().tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
                              if t.live and t.name == "bench-web-ok")
                floor = f"{server_url}webfloor/"
                paths = {
                    "direct": (f"http://127.0.0.1:{tunnel.port}/", {}),
                    "jupyter-proxy": (ok.get_web_url(), auth),
                    "jupyter-proxy-cookie": (ok.get_web_url(), login_cookie(server_url + "api/status", auth)),
                    "jupyter-auth+aiohttp": (f"{floor}aiohttp-jupyter/{tunnel.port}", auth),
                    "jupyter-auth+socket": (f"{floor}socket-jupyter/{tunnel.port}", auth),
                    "tornado+aiohttp": (f"{floor}aiohttp/{tunnel.port}", {}),
                    "tornado+socket": (f"{floor}socket/{tunnel.port}", {}),
                    "jupyter-auth-noop": (f"{floor}noop-jupyter", auth),
                    "tornado-noop": (f"{floor}noop", {}),
                    "jupyter-api-status": (f"{server_url}api/status", auth),
                }
                for url, headers in paths.values():
                    sequential(url, headers, 30)  # warm-up
                p50s: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(args.rounds):
                    for name, (url, headers) in paths.items():
                        p50s[name].append(statistics.median(sequential(url, headers, args.requests // args.rounds)))
    finally:
        stop_local_agent(Path(home) / "agent")
    for name, turns in p50s.items():
        ratios = [p / d for p, d in zip(turns, p50s["direct"])]
        results[name] = {"p50_ms": round(statistics.median(turns), 3),
                         "p50_over_direct": round(statistics.median(ratios), 2)}
    print(json.dumps(results, indent=2))
    print("| path | p50 ms | p50 / direct |\n|---|---|---|", file=sys.stderr)
    for name in paths:
        print(f"| {name} | {results[name]['p50_ms']} | {results[name]['p50_over_direct']}x |", file=sys.stderr)


if __name__ == "__main__":
    main()

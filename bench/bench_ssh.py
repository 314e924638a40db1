"""SSH-host figures: tunnel overhead, first use of a fresh host, reconnect after a cut.

Run by hand as root (it starts real sshd servers in network namespaces with
tests/sshhosts.py); prints one JSON object on stdout, logs on stderr.

    sudo .venv/bin/python bench/bench_ssh.py > ssh.json

- ``tunnel_rtt_p50_ms`` / ``direct_rtt_p50_ms``: warm ``f.remote()`` of a trivial
  function on the same agent (on host "online", in the root namespace), through
  the SSH tunnel and directly to its loopback port; 100 warm-up calls, then
  1,000 timed; nearest-rank percentiles. ``tunnel_vs_direct_p50`` is their ratio.
- ``first_use_s``: first ``f.remote()`` on a fresh offline host: SSH connect,
  probe, venv, agent code upload, dependencies from shipped wheels (downloaded
  here first; pip's cache is warm after the first run), agent start, container
  start and the call.
- ``reconnect_to_first_line_s``: a function prints a line every 10 ms; the
  host's link is cut for 8 s (longer than the keepalive deadline, so the
  transport is declared dead and replaced), then restored; the figure is the
  time from the restore to the first resumed line arriving here. Median of 3.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbmodal-bench-ssh-")


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def timed_calls(fn, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    import sshhosts

    import nbmodal
    from nbmodal import commands
    from nbmodal._runtime import connection as connections
    from nbmodal._runtime.client import AgentClient
    from nbmodal._runtime.execution import RunFollower
    from nbmodal._runtime.local_agent import AgentAddress, read_agent_json
    from nbmodal._runtime.transfer import BlobTransfer
    from nbmodal.output import StreamSink

    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    sshhosts.cleanup_stale()
    with sshhosts.SshClient.session() as client, contextlib.ExitStack() as stack:
        offline = client.start_host(stack, "alpha", offline=True, index=0)
        online = client.start_host(stack, "online", offline=False)
        for host in (offline, online):
            commands.host_add(host.name, host.name, str(host.config_path))

        def on(host: str):
            @nbmodal.App("bench").function(host=host)
            def trivial():
                return 1
            return trivial

        log("first use of a fresh offline host ...")
        started = time.perf_counter()
        on("alpha").remote()
        result["first_use_s"] = round(time.perf_counter() - started, 2)

        log("tunnel vs direct ...")
        trivial = on("online")
        tunnel = timed_calls(trivial.remote, 1000, 100)
        agent = read_agent_json(online.home / ".nbmodal" / "agent")
        direct_client = AgentClient(AgentAddress("127.0.0.1", agent.port, agent.token, agent.pid, agent.version,
                                                 agent.protocol_version, agent.state_dir))

        class Direct:
            name = "direct"

            def client(self):
                return direct_client

        from nbmodal._runtime.invocation import RunTarget, call_request

        target = RunTarget(Direct(), direct_client, trivial.spec, BlobTransfer(direct_client, on_agent_machine=False))

        def direct_call():
            request = call_request(target, trivial.name, (trivial.raw_f, (), {}), trivial.run_options())
            RunFollower(Direct(), StreamSink(), 10).start(request)

        direct = timed_calls(direct_call, 1000, 100)
        result.update(tunnel_rtt_p50_ms=round(pct(tunnel, 50), 3), tunnel_rtt_p99_ms=round(pct(tunnel, 99), 3),
                      direct_rtt_p50_ms=round(pct(direct, 50), 3), direct_rtt_p99_ms=round(pct(direct, 99), 3))
        result["tunnel_vs_direct_p50"] = round(result["tunnel_rtt_p50_ms"] / result["direct_rtt_p50_ms"], 2)

        log("reconnect after a cut ...")

        @nbmodal.App("bench").function(host="alpha")
        def ticker(n):
            import time

            for i in range(n):
                print(f"tick {i}", flush=True)
                time.sleep(0.01)

        samples = []
        for _ in range(3):
            seen = {"restored": None, "first_after": None, "count": 0}

            class Clock(io.TextIOBase):
                def write(self, text):
                    if "tick" in text and seen["restored"] and seen["first_after"] is None:
                        seen["first_after"] = time.monotonic()
                    return len(text)

            original = sys.stdout
            sys.stdout = Clock()
            try:
                worker = threading.Thread(target=ticker.remote, args=(1500,))
                worker.start()
                time.sleep(2)
                offline.cut()
                time.sleep(8)
                seen["restored"] = time.monotonic()
                offline.restore()
                worker.join(120)
            finally:
                sys.stdout = original
            if seen["first_after"]:
                samples.append(seen["first_after"] - seen["restored"])
        result["reconnect_to_first_line_s"] = round(statistics.median(samples), 2) if samples else None
        result["reconnect_samples_s"] = [round(s, 2) for s in samples]
        for name in ("alpha", "online"):
            connections.forget(name)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

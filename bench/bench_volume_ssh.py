"""Volume put and get to an SSH host beside ``scp`` of the same 1 GiB file, in the same run.

Run by hand as root (it starts a real sshd with tests/sshhosts.py, on loopback in this
namespace); prints one JSON object on stdout, logs on stderr.

    sudo .venv/bin/python bench/bench_volume_ssh.py > volume_ssh.json

- ``scp_up_gbps`` / ``scp_down_gbps``: ``scp`` of the file to and from the host's home.
- ``volume_put_gbps`` / ``volume_get_gbps``: ``upload_file`` (``force=True``) and
  ``read_file_into_fileobj`` of the same file to a volume on that host (gRPC through the
  SSH tunnel, SHA-256 checked end to end); ``*_vs_scp`` are the ratios. Median of 3,
  each put, get and scp interleaved so that they see the same load.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbmodal-bench-volssh-")
GIB = 2**30


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def main() -> None:
    import sshhosts

    import nbmodal
    from nbmodal import commands
    from nbmodal.volume import CHUNK_BYTES, upload_file

    trials = int(os.environ.get("TRIALS", "3"))
    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix="nbmodal-bench-volssh-files-"))
    source = work / "big.bin"
    block = os.urandom(CHUNK_BYTES)
    with open(source, "wb") as f:
        for i in range(GIB // CHUNK_BYTES):
            f.write(block[:-4] + i.to_bytes(4, "little"))
    sshhosts.cleanup_stale()
    try:
        with sshhosts.SshClient.session() as client, contextlib.ExitStack() as stack:
            host = client.start_host(stack, "online", offline=False)
            commands.host_add(host.name, host.name, str(host.config_path))
            log("first use of the host (agent install) ...")
            volume = nbmodal.Volume.from_name("bench", create_if_missing=True, host=host.name)
            scp = ["scp", "-q", "-F", str(host.config_path)]
            times: dict[str, list[float]] = {"scp_up": [], "scp_down": [], "volume_put": [], "volume_get": []}

            def timed(key, fn):
                started = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - started)

            for trial in range(trials):
                log(f"trial {trial} ...")
                timed("scp_up", lambda: subprocess.run([*scp, str(source), f"{host.name}:big.bin"], check=True))
                timed("scp_down", lambda: subprocess.run([*scp, f"{host.name}:big.bin", str(work / "back.bin")],
                                                         check=True))
                (work / "back.bin").unlink()
                host.ssh("rm -f big.bin")
                timed("volume_put", lambda: upload_file(volume, source, "/big.bin", force=True))

                def get():
                    with open(work / "back.bin", "wb") as f:
                        volume.read_file_into_fileobj("/big.bin", f)

                timed("volume_get", get)
                (work / "back.bin").unlink()
            for key, samples in times.items():
                result[f"{key}_gbps"] = round(GIB / statistics.median(samples) / 1e9, 3)
            result["volume_put_vs_scp"] = round(result["volume_put_gbps"] / result["scp_up_gbps"], 3)
            result["volume_get_vs_scp"] = round(result["volume_get_gbps"] / result["scp_down_gbps"], 3)
            with contextlib.suppress(Exception):
                nbmodal.Volume.delete("bench", host=host.name)
            commands.agent_stop()
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""Volume put and get to an SSH host beside ``scp`` of the same 1 GiB file, in the same run.

Run by hand as root (it starts a real sshd with tests/sshhosts.py, on loopback in this
namespace); prints one JSON object on stdout, logs on stderr.

    sudo .venv/bin/python bench/bench_volume_ssh.py > volume_ssh.json

- ``scp_up_gbps`` / ``scp_down_gbps``: ``scp`` of the file to and from the host's home.
- ``volume_put_gbps`` / ``volume_get_gbps``: ``upload_file`` (``force=True``) and
  ``read_file_into_fileobj`` of the same file to a volume on that host: the bytes through the
  system ``ssh`` (nbmodal/_runtime/volume_ssh_bulk.py, BLAKE3 checked by the agent), unless
  ``NBMODAL_SSH_BULK=0`` (gRPC through the SSH tunnel, SHA-256 checked end to end); ``*_vs_scp``
  are the ratios of the medians, ``*_by_trial`` the ratio in each trial (each transfer and its
  ``scp`` back to back; the order flips every trial). Median of ``TRIALS`` (3). ``SIZE_MIB``
  (1024) sets the file's size; ``GRPC=1`` also times the gRPC path
  (``volume_put_grpc_gbps`` / ``volume_get_grpc_gbps``); ``SCP_GCM=1`` also times ``scp -c
  aes128-gcm@openssh.com`` (the cipher the ssh path prefers; ``scp_gcm_*``). Each timed step starts
  after a ``sync``, so none pays for the previous one's writeback.
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


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def main() -> None:
    import logging

    import sshhosts

    bulk_log = logging.getLogger("nbmodal._runtime.volume_ssh_bulk")  # where each put's time went, on stderr
    bulk_log.setLevel(logging.DEBUG)
    bulk_log.addHandler(logging.StreamHandler())

    import nbmodal
    from nbmodal import commands
    from nbmodal.volume import CHUNK_BYTES, upload_file

    trials = int(os.environ.get("TRIALS", "3"))
    size = int(os.environ.get("SIZE_MIB", "1024")) << 20
    grpc_too, scp_gcm = os.environ.get("GRPC") == "1", os.environ.get("SCP_GCM") == "1"
    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix="nbmodal-bench-volssh-files-"))
    source = work / "big.bin"
    block = os.urandom(CHUNK_BYTES)
    with open(source, "wb") as f:
        for i in range(size // CHUNK_BYTES):
            f.write(block[:-4] + i.to_bytes(4, "little"))
    sshhosts.cleanup_stale()
    try:
        with sshhosts.SshClient.session() as client, contextlib.ExitStack() as stack:
            host = client.start_host(stack, "online", offline=False)
            commands.host_add(host.name, host.name, str(host.config_path))
            log("first use of the host (agent install) ...")
            volume = nbmodal.Volume.from_name("bench", create_if_missing=True, host=host.name)
            scp = ["scp", "-q", "-F", str(host.config_path)]
            gcm = [*scp, "-c", "aes128-gcm@openssh.com"]
            times: dict[str, list[float]] = {"scp_up": [], "scp_down": [], "volume_put": [], "volume_get": []}
            if scp_gcm:
                times.update(scp_gcm_up=[], scp_gcm_down=[])
            if grpc_too:
                times.update(volume_put_grpc=[], volume_get_grpc=[])

            def timed(key, fn):
                os.sync()  # each starts without the previous step's dirty pages being written back under it
                started = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - started)

            def scp_up():
                host.ssh("rm -f big.bin")  # scp writes a new file each time (not timed)
                timed("scp_up", lambda: subprocess.run([*scp, str(source), f"{host.name}:big.bin"], check=True))

            def scp_down():
                timed("scp_down", lambda: subprocess.run([*scp, f"{host.name}:big.bin", str(work / "back.bin")],
                                                         check=True))
                (work / "back.bin").unlink()

            def get():
                with open(work / "back.bin", "wb") as f:
                    volume.read_file_into_fileobj("/big.bin", f)

            def put():
                timed("volume_put", lambda: upload_file(volume, source, "/big.bin", force=True))

            def volume_get():
                timed("volume_get", get)
                (work / "back.bin").unlink()

            for trial in range(trials):
                log(f"trial {trial} ...")
                # ABBA: each volume transfer next to its scp, and first in every other trial (no order bias)
                steps = (scp_up, put, volume_get, scp_down) if trial % 2 == 0 else (put, scp_up, scp_down, volume_get)
                for step in steps:
                    step()
                if scp_gcm:
                    host.ssh("rm -f big.bin")
                    timed("scp_gcm_up", lambda: subprocess.run([*gcm, str(source), f"{host.name}:big.bin"],
                                                               check=True))
                    timed("scp_gcm_down", lambda: subprocess.run([*gcm, f"{host.name}:big.bin",
                                                                  str(work / "back.bin")], check=True))
                    (work / "back.bin").unlink()
                if grpc_too:
                    os.environ["NBMODAL_SSH_BULK"] = "0"
                    try:
                        timed("volume_put_grpc", lambda: upload_file(volume, source, "/big.bin", force=True))
                        timed("volume_get_grpc", get)
                    finally:
                        del os.environ["NBMODAL_SSH_BULK"]
                    (work / "back.bin").unlink()
            for key, samples in times.items():
                result[f"{key}_gbps"] = round(size / statistics.median(samples) / 1e9, 3)
                result[f"{key}_samples_s"] = [round(t, 3) for t in samples]
            result["volume_put_vs_scp"] = round(result["volume_put_gbps"] / result["scp_up_gbps"], 3)
            result["volume_get_vs_scp"] = round(result["volume_get_gbps"] / result["scp_down_gbps"], 3)
            # the same ratios trial by trial (each pair ran back to back), and their medians
            for ours, theirs in (("volume_put", "scp_up"), ("volume_get", "scp_down")):
                pairs = [round(b / a, 3) for a, b in zip(times[ours], times[theirs])]
                result[f"{ours}_vs_scp_by_trial"] = pairs
                result[f"{ours}_vs_scp_median_of_trials"] = statistics.median(pairs)
            result["size_bytes"] = size
            from nbmodal._runtime.volume_ssh_bulk import bulk_route

            result["ssh_bulk_used"] = bulk_route(volume._connection(), size) is not None
            with contextlib.suppress(Exception):
                nbmodal.Volume.delete("bench", host=host.name)
            commands.agent_stop()
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.environ["NBMODAL_HOME"], ignore_errors=True)  # the agent is stopped: its home goes too
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""Volumes, Dicts and Queues on the embedded local agent; prints one JSON object.

    .venv/bin/python bench/bench_storage.py > storage.json

- ``volume_upload_gbps`` / ``volume_download_gbps``: a 1 GiB file (distinct 4 MiB
  blocks) through ``upload_file`` (to a new path) and ``read_file_into_fileobj`` on the
  local agent, which take its local fast path (copied directly, BLAKE3 checked by client
  and agent), against ``cp`` of the same file in the same run (``cp_gbps``, page cache
  warm for both); ``*_vs_cp`` are the ratios. ``volume_put_commit_gbps``: a
  ``batch_upload`` of the file, which also commits (the agent's SHA-256 of it for the
  version manifest, and a sync). ``grpc_upload_gbps`` / ``grpc_download_gbps``: the
  same transfers with the fast path off (``NBMODAL_VOLUME_LOCAL=0``: 4 MiB gRPC messages,
  SHA-256 on both ends), as to a remote host. Median of ``--trials`` (5), each measure
  interleaved with the others so they see the same load. ``--volume-only`` skips the rest.
- ``dict_put_get_per_s`` / ``queue_put_get_per_s``: one ``d[k] = v`` plus one
  ``d[k]`` (one ``q.put`` plus one ``q.get``) from this process, as pairs per
  second over 500 pairs after 50 warm-up pairs; ``remote_call_per_s`` is warm
  ``f.remote()`` calls per second in the same run, for scale.
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

os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbmodal-bench-storage-")
GIB = 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--volume-only", action="store_true", help="only the volume transfers")
    args = parser.parse_args()
    import nbmodal
    from nbmodal.commands import agent_stop
    from nbmodal.volume import CHUNK_BYTES, upload_file

    work = Path(tempfile.mkdtemp(prefix="nbmodal-bench-files-"))
    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    try:
        source = work / "big.bin"
        block = os.urandom(CHUNK_BYTES)
        with open(source, "wb") as f:
            for i in range(GIB // CHUNK_BYTES):
                f.write(block[:-4] + i.to_bytes(4, "little"))
        times: dict[str, list[float]] = {key: [] for key in ("cp", "volume_upload", "volume_download",
                                                             "volume_put_commit", "grpc_upload", "grpc_download")}
        volume = nbmodal.Volume.from_name("bench", create_if_missing=True)

        def timed(key: str, fn) -> None:
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)

        def download(path: str) -> None:
            with open(work / "back.bin", "wb") as f:
                volume.read_file_into_fileobj(path, f)

        def put_and_commit(path: str) -> None:
            with volume.batch_upload(force=True) as batch:
                batch.put_file(source, path)

        for _ in range(args.trials):
            timed("cp", lambda: subprocess.run(["cp", str(source), str(work / "copy.bin")], check=True))
            (work / "copy.bin").unlink()
            timed("volume_upload", lambda: upload_file(volume, source, "/big.bin"))
            timed("volume_download", lambda: download("/big.bin"))
            (work / "back.bin").unlink()
            volume.remove_file("/big.bin")  # a fresh file each time, as cp's copy (removed untimed)
            timed("volume_put_commit", lambda: put_and_commit("/committed.bin"))
            volume.remove_file("/committed.bin")
            os.environ["NBMODAL_VOLUME_LOCAL"] = "0"  # as to a remote host: gRPC, SHA-256 on both ends
            try:
                timed("grpc_upload", lambda: upload_file(volume, source, "/grpc.bin"))
                timed("grpc_download", lambda: download("/grpc.bin"))
            finally:
                del os.environ["NBMODAL_VOLUME_LOCAL"]
            (work / "back.bin").unlink()
            volume.remove_file("/grpc.bin")
        for key, seconds in times.items():
            result[f"{key}_gbps"] = round(GIB / statistics.median(seconds) / 1e9, 3)
            result[f"{key}_s"] = [round(s, 3) for s in seconds]
        for key in ("volume_upload", "volume_download", "volume_put_commit", "grpc_upload", "grpc_download"):
            result[f"{key}_vs_cp"] = round(result[f"{key}_gbps"] / result["cp_gbps"], 3)
        if not args.volume_only:
            _dict_queue_call_rates(nbmodal, result)
    finally:
        agent_stop()
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


def _dict_queue_call_rates(nbmodal, result: dict) -> None:
    d = nbmodal.Dict.from_name("bench", create_if_missing=True)
    q = nbmodal.Queue.from_name("bench", create_if_missing=True)

    @nbmodal.App("bench").function()
    def trivial():
        return 1

    def dict_pair(i):
        d[i % 10] = i
        return d[i % 10]

    def queue_pair(i):
        q.put(i)
        return q.get()

    for name, op in (("dict_put_get_per_s", dict_pair), ("queue_put_get_per_s", queue_pair),
                     ("remote_call_per_s", lambda i: trivial.remote())):
        for i in range(50):
            op(i)
        started = time.perf_counter()
        for i in range(500):
            op(i)
        result[name] = round(500 / (time.perf_counter() - started), 1)


if __name__ == "__main__":
    sys.exit(main())

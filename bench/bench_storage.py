"""Volumes, Dicts and Queues on the embedded local agent; prints one JSON object.

    .venv/bin/python bench/bench_storage.py > storage.json

- ``volume_upload_gbps`` / ``volume_download_gbps``: a 1 GiB file (distinct 4 MiB
  blocks) through ``upload_file`` and ``read_file_into_fileobj`` (SHA-256
  checked end to end), against ``cp`` of the same file in the same run
  (``cp_gbps``, page cache warm for both); ``*_vs_cp`` are the ratios. Median of 3.
- ``dict_put_get_per_s`` / ``queue_put_get_per_s``: one ``d[k] = v`` plus one
  ``d[k]`` (one ``q.put`` plus one ``q.get``) from this process, as pairs per
  second over 500 pairs after 50 warm-up pairs; ``remote_call_per_s`` is warm
  ``f.remote()`` calls per second in the same run, for scale.
"""

from __future__ import annotations

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
        cp, up, down = [], [], []
        volume = nbmodal.Volume.from_name("bench", create_if_missing=True)
        for trial in range(3):
            started = time.perf_counter()
            subprocess.run(["cp", str(source), str(work / "copy.bin")], check=True)
            cp.append(time.perf_counter() - started)
            (work / "copy.bin").unlink()
            started = time.perf_counter()
            upload_file(volume, source, f"/big-{trial}.bin", force=True)
            up.append(time.perf_counter() - started)
            started = time.perf_counter()
            with open(work / "back.bin", "wb") as f:
                volume.read_file_into_fileobj(f"/big-{trial}.bin", f)
            down.append(time.perf_counter() - started)
            (work / "back.bin").unlink()
            volume.remove_file(f"/big-{trial}.bin")
        gbps = lambda seconds: round(GIB / statistics.median(seconds) / 1e9, 3)  # noqa: E731
        result.update(cp_gbps=gbps(cp), volume_upload_gbps=gbps(up), volume_download_gbps=gbps(down))
        result["volume_upload_vs_cp"] = round(result["volume_upload_gbps"] / result["cp_gbps"], 3)
        result["volume_download_vs_cp"] = round(result["volume_download_gbps"] / result["cp_gbps"], 3)

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
    finally:
        agent_stop()
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""The container's capture of fd 1 and 2 (remote_agent/worker/output.py): ``sync()`` forwards everything written
before it, from any number of threads at once (``@nbmodal.concurrent`` inputs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

# In a process of its own: the capture takes over fd 1 and 2.
SCRIPT = textwrap.dedent("""
    import json, os, sys, threading
    sys.path.insert(0, sys.argv[1])
    from remote_agent.worker.output import FdCapture

    sent, seen, lock, missing, errors = [], set(), threading.Lock(), [], []

    def send(stream, data):
        with lock:
            lines = data.decode().splitlines()
            sent.extend((stream, line) for line in lines)
            seen.update(lines)

    capture = FdCapture(send)

    def writer(i):
        try:
            for j in range(100):
                line = f"{i}:{j}"
                os.write(1 if j % 3 else 2, (line + "\\n").encode())
                capture.sync()
                with lock:
                    if line not in seen:
                        missing.append(line)  # written before sync() returned, yet not forwarded
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    capture.sync()  # a sync with nothing unread returns too
    with open(sys.argv[2], "w") as f:
        json.dump({"sent": sent, "missing": missing, "errors": errors}, f)
""")


def test_sync_from_many_threads_forwards_what_each_wrote_before_it(tmp_path: Path) -> None:
    result_path = tmp_path / "result.json"
    subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), str(result_path)], check=True, timeout=60)
    result = json.loads(result_path.read_text())
    assert result["errors"] == [] and result["missing"] == []
    for i in range(8):
        lines = [text for _, text in result["sent"] if text.startswith(f"{i}:")]
        assert lines == [f"{i}:{j}" for j in range(100)]  # each thread's output whole and in order
    streams = {text: stream for stream, text in result["sent"]}
    assert streams["0:1"] == 0 and streams["0:3"] == 1  # pb.STDOUT and pb.STDERR

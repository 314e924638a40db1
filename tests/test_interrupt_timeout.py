"""Interrupting the kernel cancels the remote run; timeouts are enforced remotely."""

from __future__ import annotations

import textwrap
import time

import pytest

from kernels import kernel

pytestmark = pytest.mark.agent


def _count(path) -> int:
    return int(path.read_text() or 0) if path.exists() else 0


def test_interrupt_raises_keyboardinterrupt_in_the_remote_code(tmp_path):
    counter, saved = tmp_path / "counter", tmp_path / "checkpoint"
    with kernel(tmp_path) as k:
        msg_id = k.start(textwrap.dedent(f"""
            %%remote
            import time
            i = 0
            try:
                while True:
                    i += 1
                    open({str(counter)!r}, "w").write(str(i))
                    print("tick", i, flush=True)
                    time.sleep(0.02)
            except KeyboardInterrupt:
                open({str(saved)!r}, "w").write("saved at %d" % i)
                raise
        """))
        k.collect(msg_id, timeout=60, until="tick 5")
        k.interrupt()
        result = k.collect(msg_id, timeout=30)
        assert result["error"]["ename"] == "KeyboardInterrupt", result
        assert saved.read_text().startswith("saved at")  # the except block ran remotely
        stopped_at = _count(counter)
        time.sleep(0.5)
        assert _count(counter) == stopped_at, "the remote loop kept running"
        # The kernel and its warm container still work.
        assert k.execute("%%remote\nprint('after', 1 + 1)")["stdout"] == "after 2\n"


def test_code_ignoring_the_interrupt_is_killed_after_the_grace_period(tmp_path):
    counter = tmp_path / "counter"
    with kernel(tmp_path) as k:
        pid_before = k.execute("%%remote\nimport os\npid = os.getpid()\n")
        msg_id = k.start(textwrap.dedent(f"""
            %%remote grace=1
            import time, os
            i = 0
            while True:
                try:
                    i += 1
                    open({str(counter)!r}, "w").write(str(i))
                    print("tick", i, flush=True)
                    time.sleep(0.02)
                except KeyboardInterrupt:
                    print("ignoring the interrupt", flush=True)
        """))
        k.collect(msg_id, timeout=60, until="tick 3")
        started = time.monotonic()
        k.interrupt()
        result = k.collect(msg_id, timeout=30)
        assert time.monotonic() - started < 10
        assert "ignoring the interrupt" in result["stdout"]
        assert result["error"]["ename"] == "KeyboardInterrupt"
        assert "did not stop within 1 s" in result["error"]["evalue"]
        stopped_at = _count(counter)
        time.sleep(0.5)
        assert _count(counter) == stopped_at, "the killed container kept running"
        assert pid_before["error"] is None
        # The killed container was replaced: the next cell runs.
        assert k.execute("%%remote\nprint('replaced')")["stdout"] == "replaced\n"


def test_timeout_is_enforced_remotely(tmp_path):
    with kernel(tmp_path) as k:
        started = time.monotonic()
        result = k.execute("%%remote timeout=1\nimport time\nprint('start', flush=True)\ntime.sleep(30)")
        assert time.monotonic() - started < 10
        assert result["stdout"] == "start\n"
        assert result["error"]["ename"] == "TimeoutError"
        assert "timeout of 1 s" in result["error"]["evalue"]
        # A timeout that user code swallows is still enforced (the container is killed).
        result = k.execute(textwrap.dedent("""
            %%remote timeout=1 grace=1
            import time
            while True:
                try:
                    time.sleep(30)
                except BaseException:
                    pass
        """))
        assert result["error"]["ename"] == "TimeoutError", result
        assert k.execute("%%remote\nprint('fine')")["stdout"] == "fine\n"

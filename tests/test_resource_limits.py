"""memory=(request, limit) on a real agent: a run over its limit fails with the limit and its peak,
its container is replaced, and the agent and the other containers go on."""

from __future__ import annotations

import re
import time

import pytest

import nbmodal
from kernels import kernel
from nbmodal.exceptions import MemoryLimitExceededError

pytestmark = pytest.mark.agent

app = nbmodal.App("resource-limits")


@app.function(memory=(64, 128), timeout=60)
def hold(mib: int, seconds: float) -> int:
    import time

    held = bytearray(mib * 1024 * 1024)  # zero-filled: every page touched, all of it resident
    time.sleep(seconds)
    return len(held)


@app.function(timeout=60)
def bystander(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_a_run_over_its_memory_limit_fails_naming_the_limit_and_its_peak(agent_address):
    other = bystander.spawn(3.0)
    started = time.monotonic()
    with pytest.raises(MemoryLimitExceededError) as caught:
        hold.remote(400, 30.0)
    message = str(caught.value)
    assert "memory limit of 128 MiB" in message, message
    peak = int(re.search(r"peak (\d+) MiB", message).group(1))
    assert peak >= 128, message
    assert isinstance(caught.value, MemoryError)
    assert time.monotonic() - started < 25  # ended by the limit, not by its own end

    assert other.get(timeout=60) > 0  # the other container was left alone
    assert hold.remote(8, 0.0) == 8 * 1024 * 1024  # under its limit, in a fresh container
    assert bystander.remote(0.0) > 0  # and the agent is still serving


def test_a_cell_takes_a_memory_limit_as_request_colon_limit(tmp_path, agent_address):
    with kernel(tmp_path) as k:
        over = k.execute("%%remote memory=64:128 timeout=60\nimport time\nheld = bytearray(400 * 2**20)\n"
                         "time.sleep(30)")
        assert over["error"] is not None and over["error"]["ename"] == "MemoryLimitExceededError", over
        assert "memory limit of 128 MiB" in over["error"]["evalue"], over
        under = k.execute("%%remote memory=64:128\nsmall = len(bytearray(2**20))")
        assert under["error"] is None, under
        assert k.execute("print(small)")["stdout"].strip() == str(2**20)

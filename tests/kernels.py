"""Drive a real kernel by hand (for interrupts and restarts)."""

from __future__ import annotations

import queue
import re
import time
from contextlib import contextmanager
from pathlib import Path

from jupyter_client.manager import KernelManager

from nbmodal.notebook_runner import _ThisPythonKernels

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Kernel:
    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code: str, timeout: float = 120) -> dict:
        """Run code to completion; returns {'stdout', 'stderr', 'error', 'data', 'reply'}."""
        msg_id = self.kc.execute(code)
        return self.collect(msg_id, timeout)

    def start(self, code: str) -> str:
        return self.kc.execute(code)

    def collect(self, msg_id: str, timeout: float = 120, until: str | None = None) -> dict:
        """Gather a request's output until it is idle (or ``until`` appears in the stream it was printed to)."""
        result = {"stdout": "", "stderr": "", "error": None, "data": []}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                result[content["name"]] += content["text"]
                if until and until in result[content["name"]]:
                    return result
            elif kind == "error":
                result["error"] = {"ename": content["ename"], "evalue": content["evalue"],
                                   "traceback": ANSI.sub("", "\n".join(content["traceback"]))}
            elif kind in ("display_data", "execute_result"):
                result["data"].append(content["data"])
            elif kind == "status" and content["execution_state"] == "idle":
                return result
        raise TimeoutError(f"no idle within {timeout} s; got {result}")

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@contextmanager
def kernel(cwd: Path | None = None, load_ext: bool = True):
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisPythonKernels())
    km.start_kernel(cwd=str(cwd) if cwd else None, extra_arguments=["--IPKernelApp.log_level=ERROR"])
    k = Kernel(km)
    try:
        if load_ext:
            k.execute("%load_ext nbmodal")
        yield k
    finally:
        k.shutdown()

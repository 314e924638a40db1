"""Run a cell in a real kernel and answer its stdin requests (input box prompts) from a script."""

from __future__ import annotations

import queue
import time

from kernels import ANSI, Kernel


def run_answering(k: Kernel, code: str, answers: list[str], timeout: float = 90) -> dict:
    """Execute ``code``, answering each input request with the next of ``answers`` (as a user typing
    in the notebook's input box would). Returns {'stdout', 'stderr', 'error', 'data', 'prompts'}; fails
    when a prompt comes with no answer left, or not every answer was asked for."""
    msg_id = k.kc.execute(code, allow_stdin=True)
    left = list(answers)
    result: dict = {"stdout": "", "stderr": "", "error": None, "data": [], "prompts": []}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = k.kc.get_stdin_msg(timeout=0.02)
        except queue.Empty:
            pass
        else:
            if request["msg_type"] == "input_request":
                result["prompts"].append(request["content"]["prompt"])
                if not left:
                    k.kc.input("c")  # let the run end before failing
                    raise AssertionError(f"an unexpected prompt {request['content']['prompt']!r}; so far {result}")
                k.kc.input(left.pop(0))
        try:
            msg = k.kc.get_iopub_msg(timeout=0.02)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            result[content["name"]] += content["text"]
        elif kind == "error":
            result["error"] = {"ename": content["ename"], "evalue": content["evalue"],
                               "traceback": ANSI.sub("", "\n".join(content["traceback"]))}
        elif kind in ("display_data", "execute_result"):
            result["data"].append(content["data"])
        elif kind == "status" and content["execution_state"] == "idle":
            assert not left, f"answers never asked for: {left}; got {result}"
            return result
    raise TimeoutError(f"no idle within {timeout} s; got {result}")

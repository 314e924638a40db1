"""``procs_per_node=K``: a gang rank's function or cell run by ``torchrun``, K processes on this node.

In a gang's container (its environment set by nbmodal/_runtime/gang.py:
``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``, ``NBMODAL_CLUSTER_SIZE``,
``LOCAL_WORLD_SIZE``), the run's call is ``run_under_torchrun`` (or
``run_cell_under_torchrun``), which writes the real call to a file and runs

    python -m torch.distributed.run --nnodes N --nproc-per-node K --node-rank R \\
        --master-addr ADDR --master-port PORT -m remote_agent.worker.torchrun CALL RESULT

(``torchrun`` is that module's script; the image must have torch). Each of the
K processes (this module's ``main``) runs the call with torchrun's own
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; the process of global rank 0
writes the function's result, which is the run's. Their output is the
container's: it streams as any run's does.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def torchrun_argv(nnodes: int, nproc_per_node: int, node_rank: int, master_addr: str, master_port: int,
                  call_path: str, result_path: str, python: str = sys.executable) -> list[str]:
    """The command that runs the call file under torchrun on this node."""
    return [python, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}",
            f"--node-rank={node_rank}", f"--master-addr={master_addr}", f"--master-port={master_port}",
            "-m", "remote_agent.worker.torchrun", call_path, result_path]


def _run(call: tuple[str, Any]) -> Any:
    import cloudpickle

    env = os.environ
    with tempfile.TemporaryDirectory(prefix="nbmodal-torchrun-") as tmp:
        call_path, result_path = Path(tmp, "call.pkl"), Path(tmp, "result.pkl")
        call_path.write_bytes(cloudpickle.dumps(call))
        argv = torchrun_argv(int(env["NBMODAL_CLUSTER_SIZE"]), int(env["LOCAL_WORLD_SIZE"]), int(env["NODE_RANK"]),
                             env["MASTER_ADDR"], int(env["MASTER_PORT"]), str(call_path), str(result_path))
        code = subprocess.run(argv, check=False).returncode
        if code != 0:
            raise ChildProcessError(f"torchrun exited with status {code} on node {env['NODE_RANK']}: {' '.join(argv)}")
        return pickle.loads(result_path.read_bytes()) if result_path.exists() else None


def run_under_torchrun(function: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``function(*args, **kwargs)`` in each of torchrun's processes; rank 0's result is returned."""
    return _run(("function", (function, args, kwargs)))


def run_cell_under_torchrun(code: str, filename: str, inputs: dict[str, Any]) -> None:
    """Run a cell's code in each of torchrun's processes, with the notebook values it reads."""
    _run(("cell", (code, filename, inputs)))


def main(call_path: str, result_path: str) -> None:
    """One torchrun process: run the call; global rank 0 keeps the result."""
    kind, payload = pickle.loads(Path(call_path).read_bytes())
    if kind == "cell":
        code, filename, inputs = payload
        exec(compile(code, filename, "exec"), {**inputs, "__name__": "__main__"})  # noqa: S102 — the user's cell
        return
    function, args, kwargs = payload
    result = function(*args, **kwargs)
    if os.environ.get("RANK", "0") == "0":
        import cloudpickle

        Path(result_path).write_bytes(cloudpickle.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

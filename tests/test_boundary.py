"""The client/agent boundary: what each side may import.

The notebook side (``nbmodal``) and the agent (``remote_agent``) share only
``nbmodal_wire``. A kernel, or a container that uses a Dict, must not pay for
the agent's server (gRPC servicer, SQLite storage, images, Slurm, zygotes).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

# What the client may load from remote_agent: the container runtime it names in
# pickles by reference (batch runner, class-method caller, modules by value).
CONTAINER_RUNTIME = {"remote_agent", "remote_agent.worker", "remote_agent.worker.batch",
                     "remote_agent.worker.classes", "remote_agent.worker.modules",
                     # @batched and in-container retries, named by spawn/spawn_map pickles
                     "remote_agent.worker.batching", "remote_agent.worker.retrying"}


def _loaded_after(statements: str) -> set[str]:
    code = textwrap.dedent(f"""
        import sys
        {statements}
        print("\\n".join(sorted(m for m in sys.modules if m.startswith(("remote_agent", "nbmodal_wire")))))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


def test_import_nbmodal_loads_no_agent_server_module():
    loaded = _loaded_after("import nbmodal")
    assert {m for m in loaded if m.startswith("remote_agent")} <= CONTAINER_RUNTIME
    assert "nbmodal_wire.proto.agent_pb2" in loaded  # the contract is what it shares


def test_a_container_using_a_dict_loads_no_agent_server_module():
    # What a function body that uses Dicts, Queues and Volumes imports in its container.
    loaded = _loaded_after("import nbmodal; from nbmodal import Dict, Queue, Volume\n"
                           "        from nbmodal._runtime import connection; connection.ContainerConnection")
    assert {m for m in loaded if m.startswith("remote_agent")} <= CONTAINER_RUNTIME


def test_the_wire_package_imports_neither_side():
    code = textwrap.dedent("""
        import sys
        import nbmodal_wire, nbmodal_wire.names, nbmodal_wire.gpu_request, nbmodal_wire.agent_file
        import nbmodal_wire.frames, nbmodal_wire.blobs, nbmodal_wire.cellcode
        from nbmodal_wire.proto import agent_pb2_grpc
        bad = [m for m in sys.modules if m.split('.')[0] in ('nbmodal', 'remote_agent', 'IPython')]
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

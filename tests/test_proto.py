"""The generated wire code is reproducible from the one .proto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def test_generated_code_matches_the_proto(tmp_path):
    subprocess.run(["bash", str(REPO / "scripts" / "gen_proto.sh"), str(tmp_path)], check=True, cwd=REPO,
                   env={**os.environ, "PYTHON": sys.executable})
    for name in ("agent_pb2.py", "agent_pb2_grpc.py", "agent_pb2.pyi"):
        fresh = (tmp_path / "nbmodal_wire" / "proto" / name).read_text()
        committed = (REPO / "nbmodal_wire" / "proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen_proto.sh"

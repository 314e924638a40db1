#!/usr/bin/env bash
# Regenerates nbmodal_wire/proto/agent_pb2*.py from agent.proto.
# The output is pinned by grpcio-tools' version (see pyproject's [test] extra);
# tests/test_proto.py checks that the committed files match a fresh run.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
"${PYTHON:-python3}" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" nbmodal_wire/proto/agent.proto

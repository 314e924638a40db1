"""The nbmodal agent: a gRPC daemon that runs notebook cells and functions in
container processes on the machine it is installed on.

This package is installed on bare GPU hosts: it must never import IPython or
Jupyter. The notebook side lives in the ``nbmodal`` package.
"""

__version__ = "0.1.0"

# Bumped on any incompatible change to remote_agent/proto/agent.proto.
PROTOCOL_VERSION = 1

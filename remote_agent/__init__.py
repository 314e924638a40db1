"""The nbmodal agent: a gRPC daemon that runs notebook cells and functions in
container processes on the machine it is installed on.

This package is installed on bare GPU hosts: it must never import IPython or
Jupyter. The notebook side lives in the ``nbmodal`` package; what both sides
share (the proto, versions, validation rules) is ``nbmodal_wire``.
"""

from nbmodal_wire import PROTOCOL_VERSION, __version__

__all__ = ["PROTOCOL_VERSION", "__version__"]

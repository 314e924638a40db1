"""The wire contract between the notebook (``nbmodal``) and the agent (``remote_agent``).

Both sides import this package; it imports neither of them, nor any server
code, so a kernel or a container that only talks to an agent stays light.
It holds the generated protobuf messages (``pb``), the protocol version, the
token key and channel options, and the rules both sides check: run ids,
names, mount paths, GPU requests (``names``, ``gpu_request``), the frames and
blob codec that values travel in, and ``agent.json`` (``agent_file``).

    from nbmodal_wire import pb
    pb.RunRequest(kind=pb.CELL, code="x = 1")
"""

from nbmodal_wire.proto import agent_pb2 as pb

__version__ = "0.1.0"

# Bumped on any incompatible change to nbmodal_wire/proto/agent.proto.
PROTOCOL_VERSION = 3

# gRPC metadata key carrying the agent's token on every call.
TOKEN_METADATA_KEY = "x-nbmodal-token"

# Values of any size travel (large ones as blobs, but inline pickles may be big too).
MESSAGE_SIZE_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]

__all__ = ["MESSAGE_SIZE_OPTIONS", "PROTOCOL_VERSION", "TOKEN_METADATA_KEY", "__version__", "pb"]

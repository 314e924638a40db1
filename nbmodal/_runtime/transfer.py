"""Moving large values (blobs) between this process and an agent.

On the agent's own machine the blob files are read and written directly in
its state dir (a mapped file, no copies through gRPC); from another machine
they are streamed in chunks over the agent's gRPC channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbmodal import serialization
from nbmodal._runtime.client import AgentClient
from nbmodal.hosts import LOCAL
from nbmodal_wire import blobs


class BlobTransfer:
    def __init__(self, client: AgentClient, on_agent_machine: bool) -> None:
        self.client = client
        self.blob_dir = Path(client.hello.state_dir) / "blobs" if on_agent_machine else None

    @classmethod
    def for_connection(cls, connection, client: AgentClient) -> BlobTransfer:
        return cls(client, on_agent_machine=connection.name == LOCAL)

    def pack(self, value: Any) -> tuple[bytes, str]:
        """Pickle a value for a request: (inline payload, "") or (b"", blob id)."""
        encoded = blobs.encode(value, serialization.dumps)
        if encoded.inline is not None:  # small enough to travel in the request
            return encoded.inline, ""
        if self.blob_dir is not None:
            blob_id = blobs.new_blob_id()
            blobs.write_blob(self.blob_dir / blob_id, encoded)
            return b"", blob_id
        return b"", self.client.put_blob(encoded.chunks())

    def fetch(self, blob_id: str, delete: bool = True) -> Any:
        """The value stored in a blob; ``delete`` removes it from the agent once read."""
        if self.blob_dir is not None:
            path = self.blob_dir / blob_id
            if not blobs.valid_blob_path(path):
                raise FileNotFoundError(f"blob {blob_id} is no longer on the agent (results are kept for a day)")
            return blobs.read_blob(path, delete=delete)
        return blobs.decode_blob_bytes(memoryview(self.client.get_blob(blob_id, delete)))

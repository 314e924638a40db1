"""A socket-level all-reduce between a gang's ranks, shaped as torch.distributed's (gloo) would do it.

Used by the multi-node tests (no torch in CI: a CPU wheel is ~200 MB). It travels to the containers
by value with the test's function.
"""

from __future__ import annotations


def all_reduce(vector: list[float]) -> list[float]:
    """Sum ``vector`` over the gang's ranks at MASTER_ADDR:MASTER_PORT (rank 0 gathers and sends back)."""
    import json as _json
    import os
    import socket

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    if rank == 0:
        with socket.create_server(("0.0.0.0", address[1])) as server:
            peers = [server.accept()[0] for _ in range(size - 1)]
            total = list(vector)
            for peer in peers:
                theirs = _json.loads(peer.makefile().readline())
                total = [a + b for a, b in zip(total, theirs)]
            for peer in peers:
                peer.sendall((_json.dumps(total) + "\n").encode())
                peer.close()
            return total
    for _ in range(200):  # rank 0 may not listen yet
        try:
            peer = socket.create_connection(address, timeout=10)
            break
        except ConnectionRefusedError:
            import time

            time.sleep(0.05)
    with peer:
        peer.sendall((_json.dumps(vector) + "\n").encode())
        return _json.loads(peer.makefile().readline())

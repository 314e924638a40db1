"""Large values written as blob files, for the tests of the blob pool and the shared arenas."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from nbmodal_wire import blobs

MIB = 1 << 20


def random_array(seed: int, mib: int = 16) -> np.ndarray:
    """``mib`` MiB of float64 noise, the same for the same seed."""
    return np.random.default_rng(seed).random((mib * MIB) // 8)


def dumps(value, buffer_callback=None) -> bytes:
    return pickle.dumps(value, protocol=5, buffer_callback=buffer_callback)


def write_value(blob_dir: Path, value) -> Path:
    """``value`` written as a new blob in ``blob_dir`` (as a client or container writes one); its path."""
    path = blob_dir / blobs.new_blob_id()
    blobs.write_blob(path, blobs.encode(value, dumps))
    return path

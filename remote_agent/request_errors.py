"""What the agent's stores refuse, and why, in words the gRPC service turns into a status.

A store (Dicts and Queues, volumes, images, blobs) raises a ``RequestError``
whose ``code`` says what kind of refusal it is; ``service.py`` maps each code
to one gRPC status in one table, and the client maps that status to its own
exception (``NotFoundError``, ``ValueError``...). The stores never import gRPC.
"""

from __future__ import annotations

NOT_FOUND = "not_found"  # no such store, volume, file, image or blob
INVALID = "invalid"  # a bad name, path, size or operation
CONFLICT = "conflict"  # can't be done in the current state (an image that is building, a resume offset)
CORRUPT = "corrupt"  # data arrived damaged (a checksum that doesn't match)
NO_SPACE = "no_space"  # the agent's state dir is full (ENOSPC): nothing was changed

CODES = (NOT_FOUND, INVALID, CONFLICT, CORRUPT, NO_SPACE)


class RequestError(Exception):
    """A request the agent refuses; ``code`` is one of ``CODES``."""

    code: str = INVALID

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            if code not in CODES:
                raise ValueError(f"unknown refusal code {code!r}; use one of {', '.join(CODES)}")
            self.code = code

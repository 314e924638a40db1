"""The words people read for the wire's state enums ("idle", "building").

The wire carries enums; the CLI, the sidebar's JSON and logs show these
words, made in one place so that no side matches on strings.

    >>> container_state_word(pb.CONTAINER_IDLE)
    'idle'
"""

from __future__ import annotations

from nbmodal_wire import pb


def container_state_word(state: int) -> str:
    return pb.ContainerState.Name(state).removeprefix("CONTAINER_").lower()


def image_state_word(state: int) -> str:
    return pb.ImageState.Name(state).removeprefix("IMAGE_").lower()


def run_state_word(state: int) -> str:
    return pb.RunState.Name(state)

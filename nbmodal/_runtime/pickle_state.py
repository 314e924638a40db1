"""Protobuf messages in the state of objects that travel into containers (nested calls).

A ``Function`` (or a class's) keeps its ``pb.ContainerSpec``; protobuf's message
classes don't pickle by value, so a function that calls another one from
inside its container would fail to send. The state carries each message as
its type's name and its bytes instead.

    def __getstate__(self):
        return picklable_state(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(restored_state(state))
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from nbmodal_wire import pb


class _PickledMessage:
    """A protobuf message as its type's name in ``nbmodal_wire.pb`` and its serialized bytes."""

    def __init__(self, message: Message) -> None:
        self.type_name = type(message).__name__
        self.data = message.SerializeToString()

    def restore(self) -> Message:
        return getattr(pb, self.type_name).FromString(self.data)


def picklable_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each protobuf message replaced by a picklable stand-in."""
    return {key: _PickledMessage(value) if isinstance(value, Message) else value for key, value in state.items()}


def restored_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as ``picklable_state`` received it."""
    return {key: value.restore() if isinstance(value, _PickledMessage) else value for key, value in state.items()}

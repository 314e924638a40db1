"""Hostile inputs for the fuzz tests: names, paths and random protobuf messages, from a seeded Random.

``HOSTILE_NAMES`` are the names every API that takes one is tried with (traversal, NUL, separators,
Unicode, a 10 KiB name). ``random_message`` fills any message type from its descriptor (so a field
added to agent.proto is fuzzed without a change here) with those strings, extreme numbers, unknown enum
values and random bytes, nested a few levels deep.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message

# Names and paths nothing may accept as a plain name: each must be refused with a clear error.
HOSTILE_NAMES: tuple[str, ...] = (
    "", ".", "..", "../escape", "../../etc/passwd", "a/../../b", "/abs/path", "a/b", "a\\b", "nul\x00byte",
    "new\nline", "tab\tname", " lead", "-rf", "a" * 10240, "ü-名前-🙂", "\u202eevil", "*", "$(id)", "a;b",
)
# What random strings are drawn from: the hostile names, plus ordinary ones (that may be accepted).
_STRINGS: tuple[str, ...] = HOSTILE_NAMES + ("ok", "x-1", "fuzz_name", "r-00000000", "b-0000000000000000", "/data",
                                            "/tmp/x", "python 3.11", "gpu=H100", "%s%n", "é")
_INTS = (0, 1, -1, 2, 7, 255, 65535, 2**31 - 1, -(2**31), 2**32 - 1)
_INTS64 = _INTS + (2**63 - 1, -(2**63), 2**64 - 1)
_FLOATS = (0.0, -1.0, 1e-9, 0.5, 3600.0, 1e308, float("inf"), float("-inf"), float("nan"))


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 40)))
    return rng.choice(_STRINGS)


def random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 7, 64, 300))))


def random_message(message_class: type[Message], rng: random.Random, depth: int = 0) -> Message:
    """A message of ``message_class`` with each field set (or not) to a hostile or random value."""
    message = message_class()
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.35:
            continue  # unset
        oneof = field.containing_oneof
        if oneof is not None and message.WhichOneof(oneof.name) is not None:
            continue  # one member of a oneof only
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _fill_map(getattr(message, field.name), field, rng, depth)
        elif _is_repeated(field):
            container = getattr(message, field.name)
            for _ in range(rng.randrange(0, 3)):
                if field.message_type is not None:
                    if depth < 3:
                        container.add().CopyFrom(random_message(_message_class(message, field), rng, depth + 1))
                else:
                    container.append(_scalar(field, rng))
        elif field.message_type is not None:
            if depth < 3:
                getattr(message, field.name).CopyFrom(random_message(_message_class(message, field), rng, depth + 1))
        else:
            setattr(message, field.name, _scalar(field, rng))
    return message


def _is_repeated(field: _descriptor.FieldDescriptor) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; `label` is deprecated there
    return bool(is_repeated) if is_repeated is not None else field.label == field.LABEL_REPEATED


def _message_class(message: Message, field: _descriptor.FieldDescriptor) -> type[Message]:
    if _is_repeated(field):
        return type(getattr(message, field.name).add())
    return type(getattr(message, field.name))


def _fill_map(container: Any, field: _descriptor.FieldDescriptor, rng: random.Random, depth: int) -> None:
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    for _ in range(rng.randrange(0, 3)):
        key = _scalar(key_field, rng)
        if value_field.message_type is not None:
            if depth < 3:
                container[key].CopyFrom(random_message(type(container[key]), rng, depth + 1))
        else:
            container[key] = _scalar(value_field, rng)


def _scalar(field: _descriptor.FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    if kind == field.TYPE_STRING:
        return random_string(rng)
    if kind == field.TYPE_BYTES:
        return random_bytes(rng)
    if kind == field.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        value = rng.choice(_FLOATS)
        return value if kind == field.TYPE_DOUBLE or abs(value) < 3e38 or value != value else 1.0
    if kind == field.TYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        return rng.choice(numbers + [max(numbers) + 7, -3])  # proto3 enums take unknown numbers too
    if kind in (field.TYPE_UINT32, field.TYPE_FIXED32):
        return rng.choice([v for v in _INTS if 0 <= v < 2**32])
    if kind in (field.TYPE_UINT64, field.TYPE_FIXED64):
        return rng.choice([v for v in _INTS64 if 0 <= v < 2**64])
    if kind in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
        return rng.choice([v for v in _INTS if -(2**31) <= v < 2**31])
    return rng.choice([v for v in _INTS64 if -(2**63) <= v < 2**63])

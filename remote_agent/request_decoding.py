"""Requests that don't parse get INVALID_ARGUMENT naming the RPC and the message it expected.

gRPC parses each request before the servicer sees it and reports a failure as UNKNOWN ("Unexpected
DecodeError"), which reads like a bug in the agent. ``decoding_errors_named`` wraps a method handler so
that it receives the raw bytes and parses them itself:

    handler = decoding_errors_named(await continuation(details), details.method)
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

# gRPC refuses status details (metadata) over 16 KiB: the call then ends "Stream removed", RESOURCE_EXHAUSTED.
MAX_DETAILS_BYTES = 8 << 10


def bounded_details(details: str) -> str:
    """``details`` cut to ``MAX_DETAILS_BYTES`` of UTF-8, saying how long it was (an error quoting a
    hostile 16 MiB name must still arrive)."""
    encoded = details.encode("utf-8", "surrogateescape")
    if len(encoded) <= MAX_DETAILS_BYTES:
        return details
    head = encoded[:MAX_DETAILS_BYTES].decode("utf-8", "ignore")
    return f"{head}… (cut: {len(details)} characters in all)"


class _BoundedContext:
    """The call's context, whose ``abort`` and ``set_details`` keep details under gRPC's limit."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> Any:
        return await self._context.abort(code, bounded_details(details), trailing_metadata)

    def set_details(self, details: str) -> None:
        self._context.set_details(bounded_details(details))


def decoding_errors_named(handler: grpc.RpcMethodHandler | None, method: str) -> grpc.RpcMethodHandler | None:
    """``handler`` parsing its own requests, answering INVALID_ARGUMENT for one that doesn't parse (and
    keeping every error's details short enough to arrive)."""
    if handler is None or handler.request_deserializer is None:
        return handler
    parse = handler.request_deserializer
    rpc = method.rsplit("/", 1)[-1]

    async def decoded(raw: bytes, context) -> Any:
        try:
            return parse(raw)
        except (DecodeError, ValueError, TypeError) as exc:
            expected = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
            what = expected.name if expected is not None else "request"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{rpc}: the request is not a valid {what} message ({exc}); is the client an "
                                f"nbmodal of another version?")

    async def decoded_stream(raws: AsyncIterator[bytes], context) -> AsyncIterator[Any]:
        async for raw in raws:
            yield await decoded(raw, context)

    serializers = dict(request_deserializer=None, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        behavior = handler.stream_stream

        async def stream_stream(raws, context):
            context = _BoundedContext(context)
            async for reply in _replies(behavior(decoded_stream(raws, context), context)):
                yield reply
        return grpc.stream_stream_rpc_method_handler(stream_stream, **serializers)
    if handler.request_streaming:
        stream_behavior = handler.stream_unary

        async def stream_unary(raws, context):
            context = _BoundedContext(context)
            return await stream_behavior(decoded_stream(raws, context), context)
        return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
    if handler.response_streaming:
        unary_stream_behavior = handler.unary_stream

        async def unary_stream(raw, context):
            context = _BoundedContext(context)
            request = await decoded(raw, context)
            async for reply in _replies(unary_stream_behavior(request, context)):
                yield reply
        return grpc.unary_stream_rpc_method_handler(unary_stream, **serializers)
    unary_behavior = handler.unary_unary

    async def unary_unary(raw, context):
        context = _BoundedContext(context)
        return await unary_behavior(await decoded(raw, context), context)
    return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)


async def _replies(result: Any) -> AsyncIterator[Any]:
    """A streaming behavior's replies: an async generator's items, or none from a coroutine that wrote them."""
    if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
        async for reply in result:
            yield reply
    else:
        await result

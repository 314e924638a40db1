"""Every RPC of the Agent service, with a fixed seed and a bounded count: no token, a wrong one, bytes that
are not its request, an oversized request, and random requests full of hostile values. Each answers a
clear status (never UNKNOWN, an unhandled exception, nor INTERNAL), and afterwards the agent still
answers Hello and runs a function, and its state dir holds nothing but what an agent keeps there.

The RPCs come from the generated descriptor, so one added to agent.proto is fuzzed without a change here.
A dedicated agent takes the abuse (the session's agent serves other tests).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest
from fuzzing import random_bytes, random_message

from nbmodal._runtime.local_agent import start_local_agent, stop_local_agent
from nbmodal_wire import MESSAGE_SIZE_OPTIONS, PROTOCOL_VERSION, TOKEN_METADATA_KEY, pb
from nbmodal_wire.names import NAME, shown

pytestmark = pytest.mark.agent

SEED = int(os.environ.get('FUZZ_SEED', '20261130'))
SERVICE = pb.DESCRIPTOR.services_by_name["Agent"]
METHODS = list(SERVICE.methods)
RANDOM_REQUESTS = int(os.environ.get('FUZZ_N', '4'))          # per RPC
CALL_TIMEOUT_S = 3.0
# Would end the agent under test; tried with bad tokens and bad bytes only.
NOT_WITH_A_VALID_REQUEST = {"Shutdown"}
# A clear refusal, or what a valid but odd request may meet. UNKNOWN (an exception the agent did not
# expect) and INTERNAL are the failures this test looks for.
CLEAR = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
         grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.PERMISSION_DENIED,
         grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
         grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DEADLINE_EXCEEDED,
         grpc.StatusCode.CANCELLED}
# What an agent keeps in its state dir (top level); anything else is a stray file a request made.
STATE_ENTRIES = {"agent.json", "agent.lock", "agent.log", "runs", "blobs", "storage.db", "storage.db-wal",
                 "storage.db-shm", "volumes", "images", "secrets", "deployments", "containers", "scratch",
                 "volume-versions", "replicas", "schedules", "apps", "supervisors",
                 "runs.sock"}


@pytest.fixture(scope="module")
def fuzzed_agent(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-home")
    state_dir = home / "agent"
    address = start_local_agent(state_dir)
    try:
        yield home, state_dir, address
    finally:
        stop_local_agent(state_dir)


def _path(method) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


def _call(channel: grpc.Channel, method, requests: list[bytes], token: str | None) -> grpc.StatusCode:
    """Send raw request bytes to ``method``; the status it ends with (OK when it answered)."""
    metadata = ((TOKEN_METADATA_KEY, token),) if token is not None else ()
    path = _path(method)
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(path)(iter(requests), metadata=metadata, timeout=CALL_TIMEOUT_S):
                pass
        elif method.client_streaming:
            channel.stream_unary(path)(iter(requests), metadata=metadata, timeout=CALL_TIMEOUT_S)
        elif method.server_streaming:
            for _ in channel.unary_stream(path)(requests[0], metadata=metadata, timeout=CALL_TIMEOUT_S):
                pass
        else:
            channel.unary_unary(path)(requests[0], metadata=metadata, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        code = exc.code()
        assert code in CLEAR, f"{method.name}: {code.name}: {exc.details()}\nrequest: {_describe(method, requests)}"
        assert exc.details(), f"{method.name}: {code.name} without a message"
        return code
    return grpc.StatusCode.OK


def _describe(method, requests: list[bytes]) -> str:
    """The requests, readable (cut), for a failure's message."""
    parsed = []
    for data in requests:
        try:
            message = _request_class(method).FromString(data)
            parsed.append(", ".join(f"{field.name}={shown(value, 100)}" for field, value in message.ListFields()))
        except Exception:  # noqa: BLE001 - garbage, on purpose
            parsed.append(repr(data[:80]))
    return " | ".join(parsed)


def _request_class(method) -> type:
    return getattr(pb, method.input_type.name)


def _garbage(method, rng: random.Random) -> bytes:
    """Bytes that do not parse as the method's request."""
    request_class = _request_class(method)
    while True:
        data = b"\x0a\xff\xff\xff\xff\x0f" + random_bytes(rng) if rng.random() < 0.5 else bytes(
            rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        try:
            request_class.FromString(data)
        except Exception:  # noqa: BLE001 - any parse failure is what this wants
            return data


def _state_entries(state_dir: Path) -> set[str]:
    return set(os.listdir(state_dir))


def test_every_rpc_refuses_no_token_and_a_wrong_one(fuzzed_agent):
    _, _, address = fuzzed_agent
    rng = random.Random(SEED)
    with grpc.insecure_channel(f"{address.host}:{address.port}", options=MESSAGE_SIZE_OPTIONS) as channel:
        for method in METHODS:
            request = random_message(_request_class(method), rng).SerializeToString()
            for token in (None, "", "wrong-" + address.token, address.token[:-1]):
                assert _call(channel, method, [request], token) == grpc.StatusCode.UNAUTHENTICATED, method.name
            # Bytes that aren't even a request: still refused for the token, before anything reads them.
            code = _call(channel, method, [_garbage(method, rng)], "wrong")
            assert code == grpc.StatusCode.UNAUTHENTICATED, method.name


def test_every_rpc_answers_bytes_that_are_not_its_request_with_invalid_argument(fuzzed_agent):
    _, _, address = fuzzed_agent
    rng = random.Random(SEED + 1)
    with grpc.insecure_channel(f"{address.host}:{address.port}", options=MESSAGE_SIZE_OPTIONS) as channel:
        for method in METHODS:
            metadata = ((TOKEN_METADATA_KEY, address.token),)
            try:
                if method.client_streaming:
                    call = (channel.stream_stream if method.server_streaming else channel.stream_unary)(_path(method))
                    result = call(iter([_garbage(method, rng)]), metadata=metadata, timeout=CALL_TIMEOUT_S)
                else:
                    call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(_path(method))
                    result = call(_garbage(method, rng), metadata=metadata, timeout=CALL_TIMEOUT_S)
                if method.server_streaming:
                    list(result)
                pytest.fail(f"{method.name} accepted bytes that are not a {method.input_type.name}")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, exc.code(), exc.details())
                assert method.input_type.name in exc.details() and method.name in exc.details(), exc.details()


def test_an_oversized_request_is_refused_clearly_and_the_agent_carries_on(fuzzed_agent):
    _, _, address = fuzzed_agent
    huge_name = "n" * (16 << 20)
    with grpc.insecure_channel(f"{address.host}:{address.port}", options=MESSAGE_SIZE_OPTIONS) as channel:
        dict_call = _find("DictCall")
        request = pb.DictRequest(op=pb.CREATE, name=huge_name).SerializeToString()
        assert _call(channel, dict_call, [request], "wrong") == grpc.StatusCode.UNAUTHENTICATED
        assert _call(channel, dict_call, [request], address.token) == grpc.StatusCode.INVALID_ARGUMENT
        # An error quoting a hostile 1 MiB value still arrives (gRPC drops status details over 16 KiB).
        get_run = _find("GetRun")
        assert _call(channel, get_run, [pb.RunRef(run_id="r" * (1 << 20)).SerializeToString()],
                     address.token) == grpc.StatusCode.NOT_FOUND
        garbage = b"\x0a\xff\xff\xff\xff\x0f" + os.urandom(16 << 20)
        assert _call(channel, _find("Hello"), [garbage], address.token) == grpc.StatusCode.INVALID_ARGUMENT
        _assert_hello(channel, address.token)


def test_random_requests_to_every_rpc_get_clear_answers_and_change_nothing_else(fuzzed_agent):
    home, state_dir, address = fuzzed_agent
    rng = random.Random(SEED + 2)
    before_home = set(os.listdir(home))
    codes: dict[str, set[str]] = {}
    started = time.monotonic()
    with grpc.insecure_channel(f"{address.host}:{address.port}", options=MESSAGE_SIZE_OPTIONS) as channel:
        for method in METHODS:
            if method.name in NOT_WITH_A_VALID_REQUEST:
                continue
            for _ in range(RANDOM_REQUESTS):
                count = rng.randrange(1, 4) if method.client_streaming else 1
                requests = [random_message(_request_class(method), rng).SerializeToString() for _ in range(count)]
                codes.setdefault(method.name, set()).add(_call(channel, method, requests, address.token).name)
        _assert_hello(channel, address.token)
    # A bound for the default count; a larger FUZZ_N (a manual run) may take proportionally longer.
    assert time.monotonic() - started < 120 * max(1.0, RANDOM_REQUESTS / 50)
    assert set(os.listdir(home)) == before_home, "a request made files beside the state dir"
    stray = _state_entries(state_dir) - STATE_ENTRIES
    assert not stray, f"requests made files the agent doesn't keep: {sorted(stray)}"
    for store in ("volumes",):
        root = state_dir / store
        names = [name for name in os.listdir(root) if not name.startswith(".")] if root.is_dir() else []
        assert all(NAME.fullmatch(name) for name in names), names
    _assert_a_run_works(home)


def _find(name: str):
    return next(method for method in METHODS if method.name == name)


def _assert_hello(channel: grpc.Channel, token: str) -> None:
    hello = pb.HelloRequest(protocol_version=PROTOCOL_VERSION, client_version="fuzz", client_python="3")
    reply = channel.unary_unary(_path(_find("Hello")), request_serializer=pb.HelloRequest.SerializeToString,
                                response_deserializer=pb.HelloReply.FromString)(
        hello, metadata=((TOKEN_METADATA_KEY, token),), timeout=15)
    assert reply.protocol_version == PROTOCOL_VERSION


def _assert_a_run_works(home: Path) -> None:
    script = textwrap.dedent("""
        import nbmodal
        app = nbmodal.App("after-fuzz")
        @app.function()
        def add(a, b):
            return a + b
        with app.run():
            print("result", add.remote(40, 2))
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "NBMODAL_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert "result 42" in done.stdout, done.stderr[-3000:]

"""The gRPC face of the agent: each RPC is a few lines over ``Agent``."""

from __future__ import annotations

import hmac
import os
import socket
from collections.abc import AsyncIterator

import grpc

from remote_agent import PROTOCOL_VERSION, __version__, blobs
from remote_agent.agent import CONTAINER_PYTHON, Agent, Draining
from remote_agent.proto import agent_pb2 as pb
from remote_agent.proto import agent_pb2_grpc as pb_grpc

TOKEN_METADATA_KEY = "x-nbmodal-token"
# Payloads (captured variables, results) can be large; the agent binds to loopback.
MESSAGE_SIZE_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class AgentService(pb_grpc.AgentServicer):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def Hello(self, request: pb.HelloRequest, context) -> pb.HelloReply:
        return pb.HelloReply(protocol_version=PROTOCOL_VERSION, agent_version=__version__,
                             container_python=CONTAINER_PYTHON, pid=os.getpid(),
                             hostname=socket.gethostname(), state_dir=str(self.agent.state_dir))

    async def Run(self, request: pb.RunRequest, context) -> AsyncIterator[pb.RunEvent]:
        # The run belongs to the agent: a client that goes away doesn't stop it.
        run = await self._submit(request, context)
        async for event in run.follow(after_seq=1):  # the client knows the id already
            yield event

    async def Submit(self, request: pb.RunRequest, context) -> pb.RunInfo:
        return (await self._submit(request, context)).info

    async def _submit(self, request: pb.RunRequest, context):
        try:
            return self.agent.submit(request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Draining as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    async def Attach(self, request: pb.AttachRequest, context) -> AsyncIterator[pb.RunEvent]:
        run = self.agent.runs.get(request.run_id)
        if run is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id!r} on this agent")
        async for event in run.follow(request.after_seq, request.follow):
            yield event

    async def Cancel(self, request: pb.CancelRequest, context) -> pb.RunInfo:
        run = await self._run(request.run_id, context)
        self.agent.cancel(run, force=request.force)
        return run.info

    async def GetRun(self, request: pb.RunRef, context) -> pb.RunInfo:
        return (await self._run(request.run_id, context)).info

    async def ListRuns(self, request: pb.ListRunsRequest, context) -> pb.RunList:
        return pb.RunList(runs=[run.info for run in self.agent.runs.list(request.limit)])

    async def ListSessions(self, request: pb.Empty, context) -> pb.SessionList:
        return pb.SessionList(sessions=self.agent.session_infos())

    async def StopSession(self, request: pb.SessionRef, context) -> pb.Empty:
        if not await self.agent.pool.stop_session(request.name):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no session named {request.name!r} on this agent")
        return pb.Empty()

    async def FetchValue(self, request: pb.FetchValueRequest, context) -> pb.FetchValueReply:
        return await self.agent.fetch_value(request.session, request.name)

    async def ListContainers(self, request: pb.Empty, context) -> pb.ContainerList:
        return pb.ContainerList(containers=self.agent.container_infos())

    async def ListGpus(self, request: pb.Empty, context) -> pb.GpuList:
        return pb.GpuList(gpus=self.agent.gpu_infos())

    async def Shutdown(self, request: pb.Empty, context) -> pb.Empty:
        self.agent.stopping.set()
        return pb.Empty()

    async def PutBlob(self, request_iterator, context) -> pb.BlobRef:
        blob_id = blobs.new_blob_id()
        path = self.agent.blob_dir / blob_id
        partial = path.with_name(path.name + ".partial")
        size = 0
        with open(partial, "wb") as f:
            async for chunk in request_iterator:
                f.write(chunk.data)
                size += len(chunk.data)
        os.replace(partial, path)
        return pb.BlobRef(blob_id=blob_id, size=size)

    async def GetBlob(self, request: pb.BlobRef, context) -> AsyncIterator[pb.BlobChunk]:
        path = self.agent.blob_dir / request.blob_id
        if not blobs.valid_blob_path(path):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no blob {request.blob_id!r} on this agent")
        with open(path, "rb") as f:
            while chunk := f.read(blobs.CHUNK_BYTES):
                yield pb.BlobChunk(data=chunk)
        if request.delete:
            path.unlink(missing_ok=True)

    async def _run(self, run_id: str, context):
        run = self.agent.runs.get(run_id)
        if run is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {run_id!r} on this agent")
        return run


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call that doesn't carry the agent's token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(self, continuation, handler_call_details):
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                if hmac.compare_digest(value.encode(), self._token):
                    return await continuation(handler_call_details)
                break
        handler = await continuation(handler_call_details)
        return _refusing(handler)


_REFUSAL = ("missing or wrong agent token; the token is in agent.json in the agent's state dir "
            "(nbmodal reads it for you: check NBMODAL_HOME)")


def _refusing(handler: grpc.RpcMethodHandler | None):
    if handler is None:
        return None

    async def refuse_unary(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)

    async def refuse_stream(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)
        yield  # pragma: no cover - makes this an async generator

    serializers = dict(request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **serializers)
    return grpc.unary_unary_rpc_method_handler(refuse_unary, **serializers)

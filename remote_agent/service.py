"""The gRPC face of the agent: each RPC is a few lines over ``Agent``."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from collections.abc import AsyncIterator

import grpc

from nbmodal_wire import MESSAGE_SIZE_OPTIONS, PROTOCOL_VERSION, TOKEN_METADATA_KEY, __version__, blobs
from remote_agent.agent import CONTAINER_PYTHON, Agent, Draining
from nbmodal_wire import pb
from nbmodal_wire.proto import agent_pb2_grpc as pb_grpc
from remote_agent.images import ImageError
from remote_agent.slurm import cluster_gpus
from remote_agent.storage import StoreError
from remote_agent.volumes import CHUNK_BYTES, hash_prefix

_LIFECYCLE_OPS = (pb.CREATE, pb.LOOKUP, pb.DELETE, pb.LIST)


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
        run = self.agent.runs.get(request.run_id)
        if run is None:
            # Its Run call may still be on the way: it will be refused when it arrives.
            self.agent.cancel_before_arrival(request.run_id)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id!r} on this agent")
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

    async def StopContainer(self, request: pb.ContainerRef, context) -> pb.Empty:
        if not await self.agent.stop_container(request.container_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no container {request.container_id!r} on this agent")
        return pb.Empty()

    async def HostStats(self, request: pb.Empty, context) -> pb.HostStatsReply:
        return host_stats()

    async def ListGpus(self, request: pb.Empty, context) -> pb.GpuList:
        if self.agent.pool.slurm is not None:  # the cluster's cards, as Slurm sees them
            return pb.GpuList(gpus=await cluster_gpus(self.agent.pool.slurm.config))
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

    async def DictCall(self, request: pb.DictRequest, context) -> pb.DictReply:
        storage, op, name = self.agent.storage, request.op, request.name
        try:
            if op in _LIFECYCLE_OPS:
                return await self._store_lifecycle("dict", request, pb.DictReply)
            if op == pb.LEN:
                return pb.DictReply(length=await storage.call("dict_len", name))
            if op == pb.CLEAR:
                await storage.call("dict_clear", name)
                return pb.DictReply()
            if op in (pb.GET, pb.POP, pb.CONTAINS):
                value = await storage.call("dict_pop" if op == pb.POP else "dict_get", name, request.keys[0])
                return pb.DictReply(found=value is not None, values=[value] if value is not None else [])
            if op == pb.PUT:
                stored = await storage.call("dict_put", name, list(request.keys), list(request.values),
                                            request.skip_if_exists)
                return pb.DictReply(found=not stored)
            if op == pb.ITEMS:
                items = await storage.call("dict_items", name)
                return pb.DictReply(keys=[k for k, _ in items],
                                    values=[] if request.keys_only else [v for _, v in items])
        except StoreError as exc:
            await _abort_for(exc, context)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown Dict operation {op}")

    async def QueueCall(self, request: pb.QueueRequest, context) -> pb.QueueReply:
        storage, op, name = self.agent.storage, request.op, request.name
        try:
            if op in _LIFECYCLE_OPS:
                return await self._store_lifecycle("queue", request, pb.QueueReply)
            if op == pb.LEN:
                return pb.QueueReply(length=await storage.call("queue_len", name, request.partition, request.total))
            if op == pb.CLEAR:
                await storage.call("queue_clear", name, request.partition, request.total)
                storage.notify(name)
                return pb.QueueReply()
            if op == pb.PUT:
                stored = await storage.queue_put(name, request.partition, list(request.values), request.block,
                                                 request.timeout_s)
                return pb.QueueReply(full=not stored)
            if op == pb.GET:
                values = await storage.queue_get(name, request.partition, request.count, request.block,
                                                 request.timeout_s)
                return pb.QueueReply(values=values, empty=not values)
            if op == pb.ITEMS:
                return pb.QueueReply(values=await storage.call("queue_get", name, request.partition,
                                                               request.count, False))
        except StoreError as exc:
            await _abort_for(exc, context)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown Queue operation {op}")

    async def _store_lifecycle(self, kind: str, request, reply_type):
        """CREATE, LOOKUP, DELETE and LIST of a named Dict or Queue (raises StoreError)."""
        storage, op, name = self.agent.storage, request.op, request.name
        if op == pb.CREATE:
            return reply_type(created=await storage.call("create", kind, name, request.ephemeral))
        if op == pb.LIST:
            return reply_type(stores=_store_infos(await storage.call("list", kind)))
        await storage.call("lookup" if op == pb.LOOKUP else "delete", kind, name)
        if op == pb.DELETE and kind == "queue":
            storage.notify(name)  # blocked getters learn it is gone
        return reply_type()

    async def VolumeCall(self, request: pb.VolumeRequest, context) -> pb.VolumeReply:
        volumes, io, op, name = self.agent.volumes, self.agent.in_io_thread, request.op, request.name
        try:
            if op == pb.VOLUME_CREATE:
                return pb.VolumeReply(created=await io(volumes.create, name))
            if op == pb.VOLUME_LOOKUP:
                await io(volumes.volume_dir, name)
            elif op == pb.VOLUME_DELETE:
                await io(volumes.delete, name)
            elif op == pb.VOLUME_LIST:
                return pb.VolumeReply(stores=[pb.StoreInfo(name=n, length=used, created=created)
                                              for n, used, created in await io(volumes.list)])
            elif op == pb.VOLUME_LISTDIR:
                entries = await io(volumes.listdir, name, request.path or "/", request.recursive)
                return pb.VolumeReply(entries=[pb.VolumeEntry(path=e.path, type=e.type, size=e.size, mtime=e.mtime)
                                               for e in entries])
            elif op == pb.VOLUME_REMOVE:
                await io(volumes.remove, name, request.path, request.recursive)
            elif op == pb.VOLUME_COPY:
                await io(volumes.copy, name, list(request.paths), request.path)
            elif op == pb.VOLUME_RENAME:
                await io(volumes.rename, name, request.new_name)
            elif op == pb.VOLUME_STAT:
                exists, size, offset, there = await io(volumes.stat_for_upload, name, request.path, request.sha256)
                return pb.VolumeReply(file=pb.VolumeFile(name=name, path=request.path, size=size, sha256=there,
                                                         offset=offset, exists=exists))
            elif op == pb.VOLUME_COMMIT:
                await io(volumes.volume_dir, name)
                await io(os.sync)
            else:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown Volume operation {op}")
        except StoreError as exc:
            await _abort_for(exc, context)
        return pb.VolumeReply()

    async def VolumeUpload(self, request_iterator, context) -> pb.VolumeFile:
        volumes, io = self.agent.volumes, self.agent.in_io_thread
        chunks = request_iterator.__aiter__()
        first = await chunks.__anext__()
        meta = first.file
        try:
            await io(volumes.resolve, meta.name, meta.path)  # refuse a bad path before taking data
            partial = await io(volumes.partial_path, meta.name, meta.sha256)
        except StoreError as exc:
            await _abort_for(exc, context)
        there = partial.stat().st_size if partial.exists() else 0
        if meta.offset != there:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"upload of {meta.path!r} resumes at byte {there}, not {meta.offset}")
        digest = await io(hash_prefix, partial, there)
        with open(partial, "ab") as f:
            for data in [first.data] if first.data else []:
                await io(_write_and_hash, f, digest, data)
            async for chunk in chunks:
                await io(_write_and_hash, f, digest, chunk.data)
            await io(os.fsync, f.fileno())
        if digest.hexdigest() != meta.sha256:
            partial.unlink(missing_ok=True)
            await context.abort(grpc.StatusCode.DATA_LOSS,
                                f"checksum mismatch for {meta.path!r}: sent {meta.sha256}, got {digest.hexdigest()}")
        try:
            real = await io(volumes.finish_upload, meta.name, meta.path, partial)
        except StoreError as exc:
            await _abort_for(exc, context)
        volumes.remember_checksum(real, meta.sha256)
        return pb.VolumeFile(name=meta.name, path=meta.path, size=real.stat().st_size, sha256=meta.sha256)

    # -- images -------------------------------------------------------------

    async def BuildImage(self, request: pb.ImageSpec, context) -> AsyncIterator[pb.BuildEvent]:
        try:
            async for event in self.agent.images.build(request):
                yield event
        except ImageError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def ImageCall(self, request: pb.ImageRequest, context) -> pb.ImageReply:
        images = self.agent.images
        if request.op == pb.IMAGE_LIST:
            return pb.ImageReply(images=images.list())
        if request.op == pb.IMAGE_MISSING_FILES:
            return pb.ImageReply(missing=images.missing_files(list(request.sha256s)))
        try:
            if request.op == pb.IMAGE_LOG:
                return pb.ImageReply(log=await self.agent.in_io_thread(images.build_log, request.name_or_id))
            if request.op == pb.IMAGE_REBUILD:
                images.rebuild(request.name_or_id)
                return pb.ImageReply()
        except ImageError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if request.op == pb.IMAGE_REMOVE:
            try:
                images.check_not_building(request.name_or_id)
                removed = await self.agent.in_io_thread(images.remove, request.name_or_id)
            except ImageError as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            if not removed:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no image named {request.name_or_id!r} on this agent")
            return pb.ImageReply(images=[pb.ImageInfo(image_id=image_id) for image_id in removed])
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown image operation {request.op}")

    async def PutImageFile(self, request_iterator, context) -> pb.LocalFile:
        io = self.agent.in_io_thread
        partial = self.agent.images.files / f"upload-{os.getpid()}-{id(request_iterator)}.partial"
        digest, size = hashlib.sha256(), 0
        try:
            with open(partial, "wb") as f:
                async for chunk in request_iterator:
                    await io(_write_and_hash, f, digest, chunk.data)
                    size += len(chunk.data)
            await io(os.replace, partial, self.agent.images.file_path(digest.hexdigest()))
        finally:
            partial.unlink(missing_ok=True)
        return pb.LocalFile(sha256=digest.hexdigest(), size=size)

    async def VolumeDownload(self, request: pb.VolumeRequest, context) -> AsyncIterator[pb.VolumeChunk]:
        volumes, io = self.agent.volumes, self.agent.in_io_thread
        try:
            real = await io(volumes.resolve, request.name, request.path)
        except StoreError as exc:
            await _abort_for(exc, context)
        if not real.is_file():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no file {request.path!r} in volume {request.name!r}")
        digest = await io(hash_prefix, real, request.offset)
        with open(real, "rb") as f:
            f.seek(request.offset)
            while data := await io(_read_and_hash, f, digest):
                yield pb.VolumeChunk(data=data)
        yield pb.VolumeChunk(file=pb.VolumeFile(name=request.name, path=request.path, size=real.stat().st_size,
                                                sha256=digest.hexdigest()))

    async def _run(self, run_id: str, context):
        run = self.agent.runs.get(run_id)
        if run is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {run_id!r} on this agent")
        return run


def host_stats() -> pb.HostStatsReply:
    memory = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                memory[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return pb.HostStatsReply(load1=os.getloadavg()[0], cpus=os.cpu_count() or 0,
                             memory_total=memory.get("MemTotal", 0), memory_available=memory.get("MemAvailable", 0))


def _write_and_hash(f, digest, data: bytes) -> None:
    f.write(data)
    digest.update(data)


def _read_and_hash(f, digest) -> bytes:
    data = f.read(CHUNK_BYTES)
    digest.update(data)
    return data


def _store_infos(rows) -> list[pb.StoreInfo]:
    return [pb.StoreInfo(name=n, length=length, created=created, ephemeral=eph) for n, length, created, eph in rows]


async def _abort_for(exc: StoreError, context) -> None:
    code = grpc.StatusCode.NOT_FOUND if exc.code == "not_found" else grpc.StatusCode.INVALID_ARGUMENT
    await context.abort(code, str(exc))


# What a container's own token may call: its host's storage, nothing that runs code or reads runs.
CONTAINER_METHODS = frozenset(f"/nbmodal.agent.v1.Agent/{name}" for name in (
    "Hello", "DictCall", "QueueCall", "VolumeCall", "VolumeUpload", "VolumeDownload"))


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call without the agent's token (or, for storage, a live container's token)."""

    def __init__(self, token: str, container_tokens: set[str] | None = None) -> None:
        self._token = token.encode()
        self._container_tokens = container_tokens if container_tokens is not None else set()

    async def intercept_service(self, continuation, handler_call_details):
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                if hmac.compare_digest(value.encode(), self._token) or (
                        handler_call_details.method in CONTAINER_METHODS and value in self._container_tokens):
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

"""The gRPC face of the agent: each RPC unpacks its request and calls the part that owns the work.

Blob files are ``blobstore.py``, Dicts and Queues ``storage.py``, volumes
``volumes.py`` and their transfers ``volume_transfer.py``, images
``images.py``, host load ``hoststats.py``; runs, sessions and containers are
``Agent``. What those refuse (a ``RequestError``) becomes a gRPC status here,
in one table (``STATUS_FOR``), which the client turns into its own errors.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import socket
from collections.abc import AsyncIterator, Mapping

import grpc

from nbmodal_wire import PROTOCOL_VERSION, TOKEN_METADATA_KEY, __version__, pb
from nbmodal_wire.names import shown
from nbmodal_wire.proto import agent_pb2_grpc as pb_grpc
from remote_agent import container_exec, replica_calls, request_errors, runs
from remote_agent.agent import CONTAINER_PYTHON, Agent, Draining
from remote_agent.blobstore import BlobStore
from remote_agent.hoststats import host_stats
from remote_agent.images import ImageError, ImageNotFound
from remote_agent.nested_waits import never_starts_while_callers_wait
from remote_agent.request_decoding import decoding_errors_named
from remote_agent.request_errors import RequestError
from remote_agent.run_scopes import RunScopes, ScopeError
from remote_agent.storage import StoreError, check_name
from remote_agent.tunnels import TunnelRegistry
from remote_agent.volume_fast_path import VolumeFastPath
from remote_agent.volume_transfer import VolumeTransfers

_LIFECYCLE_OPS = (pb.CREATE, pb.LOOKUP, pb.DELETE, pb.LIST)


class AgentService(pb_grpc.AgentServicer):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.blobs = BlobStore(agent.blob_dir)
        self.volume_transfers = VolumeTransfers(agent.volumes, agent.in_io_thread)
        self.volume_fast_path = VolumeFastPath(agent.volumes, agent.in_io_thread)
        self.scopes = RunScopes()  # which runs a container's token reaches (nested calls)
        # Ports served from containers (nbmodal.forward, web endpoints)
        self.tunnels = TunnelRegistry(agent.runs, agent.pool.containers, self.scopes.callers)

    async def Hello(self, request: pb.HelloRequest, context) -> pb.HelloReply:
        return pb.HelloReply(protocol_version=PROTOCOL_VERSION, agent_version=__version__,
                             container_python=CONTAINER_PYTHON, pid=os.getpid(),
                             hostname=socket.gethostname(), state_dir=str(self.agent.state_dir))

    async def Run(self, request: pb.RunRequest, context) -> AsyncIterator[pb.RunEvent]:
        # The run belongs to the agent: a client that goes away doesn't stop it.
        run = await self._submit(request, context, caller_waits=True)
        with self._slot_lent(context, run):  # a calling container lends its slot meanwhile (container_slots.py)
            async for event in run.follow(after_seq=1):  # the client knows the id already
                yield event

    async def RunStream(self, requests: AsyncIterator[pb.RunRequest], context) -> AsyncIterator[pb.RunEvent]:
        # Run's answer to each request in turn, on one stream: a warm call costs a message each way,
        # not a new call (nbmodal/_runtime/run_stream.py sends the next request after a `finished`).
        async for request in requests:
            run = await self._submit(request, context, caller_waits=True)
            finished = False
            with self._slot_lent(context, run):
                async for event in run.follow(after_seq=1):
                    finished = event.HasField("finished")
                    yield event
            if not finished:  # lost: end the stream, as Run's would end, so its client asks what happened
                return

    async def Submit(self, request: pb.RunRequest, context) -> pb.RunInfo:
        return (await self._submit(request, context)).info

    async def _submit(self, request: pb.RunRequest, context, caller_waits: bool = False):
        caller = self._calling_container(context)
        scope = None
        if caller is not None:  # a nested call, from a container's code
            scope = await self._check_scope(context, self.scopes.caller_scope, caller)
            await self._check_scope(context, self.scopes.check_submit, scope, request)
            if caller_waits:
                await self._refuse_if_never_starts(request, caller, context)
        try:
            run = self.agent.submit(request)
            if caller is not None and scope is not None:
                # Its own nested calls inherit the same scope; the chain of callers is kept for the check above.
                self.scopes.adopt(run.id, scope, caller.run.id if caller.run is not None else "")
            return run
        except RequestError as exc:  # a call by name of an app or function that isn't deployed
            await context.abort(STATUS_FOR[exc.code], str(exc))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Draining as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    async def Attach(self, request: pb.AttachRequest, context) -> AsyncIterator[pb.RunEvent]:
        async with _refusals_as_status(context):
            run = await self._scoped_run(request.run_id, context)
            with self._slot_lent(context, run if request.follow else None):
                async for event in run.follow(request.after_seq, request.follow):
                    yield event

    async def Cancel(self, request: pb.CancelRequest, context) -> pb.RunInfo:
        async with _refusals_as_status(context):
            if self.agent.runs.get(request.run_id) is None:
                # Its Run call may still be on the way: it will be refused when it arrives.
                self.agent.cancel_before_arrival(request.run_id)
            run = await self._scoped_run(request.run_id, context)
            self.agent.cancel(run, force=request.force)
            return run.info

    async def InputAnswer(self, request: pb.InputAnswerRequest, context) -> pb.Empty:
        async with _refusals_as_status(context):
            run = await self._scoped_run(request.run_id, context)
            self.agent.answer_input(run, request.request_seq, request.text, request.eof)
            return pb.Empty()

    async def ClusterStatus(self, request: pb.ClusterStatusRequest, context) -> pb.ClusterStatusReply:
        return pb.ClusterStatusReply(members=self.agent.gangs.status(list(request.run_ids)))

    async def ClusterGo(self, request: pb.ClusterGoRequest, context) -> pb.Empty:
        async with _refusals_as_status(context):
            self.agent.gangs.go(request.run_id, dict(request.env))
            return pb.Empty()

    async def GetRun(self, request: pb.RunRef, context) -> pb.RunInfo:
        async with _refusals_as_status(context):
            return (await self._scoped_run(request.run_id, context)).info

    async def ListRuns(self, request: pb.ListRunsRequest, context) -> pb.RunList:
        return pb.RunList(runs=[run.info for run in self.agent.runs.list(request.limit)])

    async def ListSessions(self, request: pb.Empty, context) -> pb.SessionList:
        return pb.SessionList(sessions=self.agent.session_infos())

    async def StopSession(self, request: pb.SessionRef, context) -> pb.Empty:
        async with _refusals_as_status(context):
            if not await self.agent.pool.stop_session(request.name):
                raise RequestError(f"no session named {request.name!r} on this agent", request_errors.NOT_FOUND)
            return pb.Empty()

    async def FetchValue(self, request: pb.FetchValueRequest, context) -> pb.FetchValueReply:
        return await self.agent.fetch_value(request.session, request.name)

    async def ListContainers(self, request: pb.Empty, context) -> pb.ContainerList:
        return pb.ContainerList(containers=self.agent.container_infos())

    async def StopContainer(self, request: pb.ContainerRef, context) -> pb.Empty:
        async with _refusals_as_status(context):
            if not await self.agent.stop_container(request.container_id):
                raise RequestError(f"no container {request.container_id!r} on this agent", request_errors.NOT_FOUND)
            return pb.Empty()

    async def ContainerExec(self, request_iterator, context) -> AsyncIterator[pb.ExecOutput]:
        # The agent's token only: TokenInterceptor refuses container tokens (not in CONTAINER_METHODS).
        async with _refusals_as_status(context):
            async for output in container_exec.serve(self.agent.pool.containers, request_iterator.__aiter__(),
                                                     self._secret_env):
                yield output

    def _secret_env(self, names: list[str]) -> dict[str, str]:
        return self.agent.secrets.store.environment(pb.SecretSource(name=name) for name in names)

    async def ContainerLogs(self, request: pb.ExecLogsRequest, context) -> AsyncIterator[pb.BlobChunk]:
        async with _refusals_as_status(context):
            path = container_exec.log_path(self.agent.pool.logs_dir, request.container_id)

            def running() -> bool:
                return any(c.id == request.container_id for c in self.agent.pool.containers())

            async for data in container_exec.read_log(path, request.follow, running):
                yield pb.BlobChunk(data=data)

    # -- sandboxes (remote_agent/sandboxes.py); the agent's token only ----------

    async def SandboxCreate(self, request: pb.SandboxCreateRequest, context) -> pb.SandboxInfo:
        async with _refusals_as_status(context):
            return await self.agent.sandboxes.create(request, deadline_s=context.time_remaining())

    async def SandboxCall(self, request: pb.SandboxRequest, context) -> pb.SandboxReply:
        async with _refusals_as_status(context):
            sandboxes, op = self.agent.sandboxes, request.op
            if op == pb.SANDBOX_GET:
                return pb.SandboxReply(sandbox=sandboxes.get(request.sandbox_id).info())
            if op == pb.SANDBOX_LIST:
                return pb.SandboxReply(sandboxes=sandboxes.matching(request.app, dict(request.tags)))
            if op == pb.SANDBOX_TERMINATE:
                return pb.SandboxReply(sandbox=await sandboxes.terminate(request.sandbox_id))
            if op == pb.SANDBOX_WAIT:
                return pb.SandboxReply(sandbox=await sandboxes.wait(request.sandbox_id, request.timeout_s))
            if op == pb.SANDBOX_SET_TAGS:
                return pb.SandboxReply(sandbox=sandboxes.set_tags(request.sandbox_id, dict(request.tags)))
            raise RequestError(f"unknown sandbox operation {op}")

    async def SandboxExec(self, request_iterator, context) -> AsyncIterator[pb.ExecOutput]:
        async with _refusals_as_status(context):
            async for output in self.agent.sandboxes.exec(request_iterator.__aiter__()):
                yield output

    async def SandboxOutput(self, request: pb.SandboxOutputRequest, context) -> AsyncIterator[pb.BlobChunk]:
        async with _refusals_as_status(context):
            async for data in self.agent.sandboxes.output(request):
                yield pb.BlobChunk(data=data)

    async def SandboxStdin(self, request: pb.SandboxStdinRequest, context) -> pb.Empty:
        async with _refusals_as_status(context):
            self.agent.sandboxes.stdin(request)
            return pb.Empty()

    async def SandboxFile(self, request: pb.SandboxFileRequest, context) -> pb.SandboxFileReply:
        async with _refusals_as_status(context):
            return await self.agent.sandboxes.file(request)

    async def HostStats(self, request: pb.Empty, context) -> pb.HostStatsReply:
        return host_stats()

    async def ListGpus(self, request: pb.Empty, context) -> pb.GpuList:
        return pb.GpuList(gpus=await self.agent.gpu_list())

    async def Shutdown(self, request: pb.Empty, context) -> pb.Empty:
        self.agent.stopping.set()
        return pb.Empty()

    # -- blobs ----------------------------------------------------------------

    async def PutBlob(self, request_iterator, context) -> pb.BlobRef:
        blob_id, size = await self.blobs.put(chunk.data async for chunk in request_iterator)
        return pb.BlobRef(blob_id=blob_id, size=size)

    async def GetBlob(self, request: pb.BlobRef, context) -> AsyncIterator[pb.BlobChunk]:
        async with _refusals_as_status(context):
            async for data in self.blobs.get(request.blob_id, delete=request.delete):
                yield pb.BlobChunk(data=data)

    # -- Dicts and Queues -----------------------------------------------------

    async def DictCall(self, request: pb.DictRequest, context) -> pb.DictReply:
        async with _refusals_as_status(context):
            if request.op != pb.LIST:  # before any store or route reads the name as a file name
                check_name("Dict", request.name)
            relayed = await replica_calls.store_call(self.agent, "dict", request, context)  # home elsewhere
            return relayed if relayed is not None else await self._dict_op(request)

    async def QueueCall(self, request: pb.QueueRequest, context) -> pb.QueueReply:
        async with _refusals_as_status(context):
            if request.op != pb.LIST:
                check_name("Queue", request.name)
            relayed = await replica_calls.store_call(self.agent, "queue", request, context)  # home elsewhere
            return relayed if relayed is not None else await self._queue_op(request)

    async def ReplicaRoutes(self, request: pb.ReplicaRoutesRequest, context) -> pb.ReplicaRoutesReply:
        async with _refusals_as_status(context):
            return await replica_calls.update_routes(self.agent, request)

    async def _dict_op(self, request: pb.DictRequest) -> pb.DictReply:
        storage, op, name = self.agent.storage, request.op, request.name
        if op in _LIFECYCLE_OPS:
            return await self._store_lifecycle("dict", request, pb.DictReply)
        if op == pb.LEN:
            return pb.DictReply(length=await storage.call("dict_len", name))
        if op == pb.CLEAR:
            await storage.call("dict_clear", name)
            return pb.DictReply()
        if op in (pb.GET, pb.POP, pb.CONTAINS):
            if len(request.keys) != 1:
                raise StoreError(request_errors.INVALID, f"a Dict {pb.StoreOp.Name(op)} takes one key, not "
                                                         f"{len(request.keys)}")
            value = await storage.call("dict_pop" if op == pb.POP else "dict_get", name, request.keys[0])
            return pb.DictReply(found=value is not None, values=[value] if value is not None else [])
        if op == pb.PUT:
            stored = await storage.call("dict_put", name, list(request.keys), list(request.values),
                                        request.skip_if_exists)
            return pb.DictReply(found=not stored)
        if op == pb.ITEMS:
            items = await storage.call("dict_items", name)
            return pb.DictReply(keys=[k for k, _ in items], values=[] if request.keys_only else [v for _, v in items])
        raise StoreError(request_errors.INVALID, f"unknown Dict operation {op}")

    async def _queue_op(self, request: pb.QueueRequest) -> pb.QueueReply:
        storage, op, name = self.agent.storage, request.op, request.name
        if op in _LIFECYCLE_OPS:
            return await self._store_lifecycle("queue", request, pb.QueueReply)
        if op == pb.LEN:
            return pb.QueueReply(length=await storage.call("queue_len", name, request.partition, request.total))
        if op == pb.CLEAR:
            await storage.queue_clear(name, request.partition, request.total)
            return pb.QueueReply()
        if op == pb.PUT:
            stored = await storage.queue_put(name, request.partition, list(request.values), request.block,
                                             request.timeout_s)
            return pb.QueueReply(full=not stored)
        if op == pb.GET:
            values = await storage.queue_get(name, request.partition, request.count, request.block, request.timeout_s)
            return pb.QueueReply(values=values, empty=not values)
        if op == pb.ITEMS:
            return pb.QueueReply(values=await storage.call("queue_get", name, request.partition, request.count, False))
        raise StoreError(request_errors.INVALID, f"unknown Queue operation {op}")

    async def _store_lifecycle(self, kind: str, request, reply_type):
        """CREATE, LOOKUP, DELETE and LIST of a named Dict or Queue (raises StoreError)."""
        storage, op, name = self.agent.storage, request.op, request.name
        if op == pb.CREATE:
            return reply_type(created=await storage.call("create", kind, name, request.ephemeral))
        if op == pb.LIST:
            return reply_type(stores=_store_infos(await storage.call("list_stores", kind)))
        if op == pb.DELETE:
            await storage.delete(kind, name)
        else:
            await storage.call("lookup", kind, name)
        return reply_type()

    # -- volumes --------------------------------------------------------------

    async def VolumeCall(self, request: pb.VolumeRequest, context) -> pb.VolumeReply:
        async with _refusals_as_status(context):
            if request.op != pb.VOLUME_LIST:  # before versions, replicas or routes read it as a file name
                check_name("volume", request.name)
            served = await replica_calls.volume_call(self.agent, request, context)  # versions, replicas, homes
            return served if served is not None else await self._volume_op(request)

    async def _volume_op(self, request: pb.VolumeRequest) -> pb.VolumeReply:
        volumes, io, op, name = self.agent.volumes, self.agent.in_io_thread, request.op, request.name
        if op == pb.VOLUME_CREATE:
            return pb.VolumeReply(created=await io(volumes.create, name))
        if op == pb.VOLUME_LOOKUP:
            await io(volumes.volume_dir, name)
        elif op == pb.VOLUME_DELETE:
            await io(volumes.delete, name)
        elif op == pb.VOLUME_LIST:
            return pb.VolumeReply(stores=[pb.StoreInfo(name=n, length=used, created=created)
                                          for n, used, created in await io(volumes.list_volumes)])
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
        elif op in (pb.VOLUME_LOCAL_STAGE, pb.VOLUME_LOCAL_COMMIT, pb.VOLUME_LOCAL_READ):
            return await self.volume_fast_path.call(request)  # a client on this machine (volume_fast_path.py)
        else:
            raise StoreError(request_errors.INVALID, f"unknown Volume operation {op}")
        return pb.VolumeReply()

    async def VolumeUpload(self, request_iterator, context) -> pb.VolumeFile:
        async with _refusals_as_status(context):
            return await self.volume_transfers.receive(request_iterator.__aiter__())

    async def VolumeDownload(self, request: pb.VolumeRequest, context) -> AsyncIterator[pb.VolumeChunk]:
        async with _refusals_as_status(context):
            async for chunk in self.volume_transfers.send(request.name, request.path, request.offset):
                yield chunk

    # -- images -------------------------------------------------------------

    async def BuildImage(self, request: pb.ImageSpec, context) -> AsyncIterator[pb.BuildEvent]:
        async with _refusals_as_status(context):
            async for event in self.agent.images.build(request):
                yield event

    async def ImageCall(self, request: pb.ImageRequest, context) -> pb.ImageReply:
        if request.op != pb.IMAGE_MISSING_FILES and await self._caller_scope(context) is not None:
            # A nested call builds its function's image (missing files, then BuildImage); nothing more.
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "a container's token may only build images, not list, rebuild or remove them")
        async with _refusals_as_status(context):
            return await self._image_op(request)

    async def _image_op(self, request: pb.ImageRequest) -> pb.ImageReply:
        images, io = self.agent.images, self.agent.in_io_thread
        if request.op == pb.IMAGE_LIST:
            return pb.ImageReply(images=images.list_images())
        if request.op == pb.IMAGE_MISSING_FILES:
            return pb.ImageReply(missing=images.missing_files(list(request.sha256s)))
        if request.op == pb.IMAGE_LOG:
            return pb.ImageReply(log=await io(images.build_log, request.name_or_id))
        if request.op == pb.IMAGE_REBUILD:
            images.rebuild(request.name_or_id)
            return pb.ImageReply()
        if request.op == pb.IMAGE_REMOVE:
            images.check_not_building(request.name_or_id)
            removed = await io(images.remove, request.name_or_id)
            if not removed:
                raise ImageNotFound(f"no image named {request.name_or_id!r} on this agent")
            return pb.ImageReply(images=[pb.ImageInfo(image_id=image_id) for image_id in removed])
        raise ImageError(f"unknown image operation {request.op}")

    # -- deployed apps (deployments.py, schedules.py) -------------------------

    async def Deploy(self, request: pb.DeployRequest, context) -> pb.DeployReply:
        async with _refusals_as_status(context):
            return pb.DeployReply(app=self.agent.deployments.deploy(request))

    async def AppCall(self, request: pb.AppRequest, context) -> pb.AppReply:
        deployments = self.agent.deployments
        if request.op not in (pb.APP_LOOKUP, pb.APP_LIST) and await self._caller_scope(context) is not None:
            # A container may look deployed apps up (Function.from_name in its code); nothing more.
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "a container's token may only look deployed apps up, not stop them")
        async with _refusals_as_status(context):
            if request.op == pb.APP_LIST:
                return pb.AppReply(apps=deployments.list_apps())
            if request.op == pb.APP_LOOKUP:
                if request.app not in deployments.apps:
                    raise RequestError(deployments.not_deployed(request.app), request_errors.NOT_FOUND)
                return pb.AppReply(apps=[deployments.info(request.app, with_definitions=True)])
            if request.op == pb.APP_STOP:
                return pb.AppReply(apps=[deployments.stop(request.app)])
            if request.op == pb.APP_HISTORY:
                if not deployments.known(request.app):
                    raise RequestError(deployments.not_deployed(request.app), request_errors.NOT_FOUND)
                return pb.AppReply(history=deployments.history(request.app))
            raise RequestError(f"unknown app operation {request.op}")

    async def AppLogs(self, request: pb.AppRequest, context) -> AsyncIterator[pb.AppLogLine]:
        async with _refusals_as_status(context):
            async for line in self.agent.deployments.logs(request.app, request.follow, context.done):
                yield line

    async def PutImageFile(self, request_iterator, context) -> pb.LocalFile:
        sha256, size = await self.agent.images.receive_file((chunk.data async for chunk in request_iterator),
                                                            self.agent.in_io_thread)
        return pb.LocalFile(sha256=sha256, size=size)

    # -- secrets ----------------------------------------------------------------

    async def SecretCall(self, request: pb.SecretRequest, context) -> pb.SecretReply:
        """Named secrets: create, list (names, keys, creation times), delete; values never come back."""
        async with _refusals_as_status(context):
            store, io = self.agent.secrets.store, self.agent.in_io_thread
            if request.op == pb.SECRET_CREATE:
                info, replaced = await io(store.create, request.name, dict(request.values), request.force)
                return pb.SecretReply(secrets=[info], replaced=replaced)
            if request.op == pb.SECRET_LIST:
                return pb.SecretReply(secrets=await io(store.list))
            if request.op == pb.SECRET_DELETE:
                await io(store.delete, request.name)
                return pb.SecretReply()
            raise RequestError(f"unknown secret operation {request.op}", request_errors.INVALID)

    # -- tunnels: ports served from containers -----------------------------------

    async def TunnelCall(self, request: pb.TunnelRequest, context) -> pb.TunnelReply:
        async with _refusals_as_status(context):
            return self.tunnels.call(request, self._calling_container(context))

    def _run(self, run_id: str) -> runs.Run:
        run = self.agent.runs.get(run_id)
        if run is None:
            raise RequestError(f"no run {shown(run_id)} on this agent", request_errors.NOT_FOUND)  # a bounded quote
        return run

    # -- container tokens: nested calls ----------------------------------------

    def _slot_lent(self, context, run):
        """While a container waits on ``run`` (a nested call), its container slot is lent to it, so that the
        run never waits for slots its own callers hold (remote_agent/container_slots.py)."""
        caller = self._calling_container(context) if run is not None else None
        return self.agent.pool.slots.lent(caller.id if caller is not None else "", run.id if run is not None else "")

    def _calling_container(self, context):
        """The container whose token made this call (None for the agent's token)."""
        token = dict(context.invocation_metadata() or ()).get(TOKEN_METADATA_KEY)
        return self.agent.pool.container_tokens.get(token) if token else None

    async def _caller_scope(self, context) -> str | None:
        """None for a call with the agent's token; for a container's token, its run's scope (or the call
        is aborted with PERMISSION_DENIED when that container runs nothing)."""
        container = self._calling_container(context)
        if container is None:
            return None
        return await self._check_scope(context, self.scopes.caller_scope, container)

    async def _refuse_if_never_starts(self, request: pb.RunRequest, caller, context) -> None:
        """A nested run its waiting callers starve (they hold what it needs) is refused, not left to hang."""
        if not self.agent.launcher.reserves_resources or caller.run is None:
            return  # a backend that reserves for itself (Slurm) queues it there
        holders = [caller.id]
        for run_id in self.scopes.callers(caller.run.id)[1:]:
            run = self.agent.runs.get(run_id)
            if run is not None and run.container is not None:
                holders.append(run.container.id)
        why = never_starts_while_callers_wait(request.spec, self.agent.allocator, holders)
        if why is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"nested call refused: it would wait forever, since {why}. Give the called "
                                f"function fewer resources, or call it with .spawn() and let the caller return")

    async def _scoped_run(self, run_id: str, context) -> runs.Run:
        """The run, if the caller may touch it (any run for the agent's token)."""
        run = self._run(run_id)
        scope = await self._caller_scope(context)
        if scope is not None:
            await self._check_scope(context, self.scopes.check_touch, scope, run)
        return run

    @staticmethod
    async def _check_scope(context, check, *args):
        try:
            return check(*args)
        except ScopeError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))


def _store_infos(rows) -> list[pb.StoreInfo]:
    return [pb.StoreInfo(name=n, length=length, created=created, ephemeral=eph) for n, length, created, eph in rows]


# What each kind of refusal is on the wire; the client maps these statuses to its own errors.
STATUS_FOR = {
    request_errors.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    request_errors.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    request_errors.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    request_errors.CORRUPT: grpc.StatusCode.DATA_LOSS,
    request_errors.NO_SPACE: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@contextlib.asynccontextmanager
async def _refusals_as_status(context) -> AsyncIterator[None]:
    """Ends the call with the status of a ``RequestError`` raised inside (any other error stays a bug)."""
    try:
        yield
    except RequestError as exc:
        await context.abort(STATUS_FOR[exc.code], str(exc))


# What a container's own token may call: its host's storage, and runs of its own run's scope (nested
# calls: the run calls check the scope, run_scopes.py); never listings of runs, sessions or containers.
CONTAINER_METHODS = frozenset(f"/nbmodal.agent.v1.Agent/{name}" for name in (
    "Hello", "DictCall", "QueueCall", "VolumeCall", "VolumeUpload", "VolumeDownload",
    "Run", "RunStream", "Submit", "Attach", "Cancel", "GetRun", "InputAnswer", "PutBlob", "GetBlob",
    "BuildImage", "PutImageFile", "ImageCall", "AppCall", "TunnelCall"))


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call without the agent's token (or, for ``CONTAINER_METHODS``, a live container's token;
    ``container_tokens`` maps each to its container)."""

    def __init__(self, token: str, container_tokens: Mapping[str, object] | None = None) -> None:
        self._token = token.encode()
        self._container_tokens: Mapping[str, object] = container_tokens if container_tokens is not None else {}

    async def intercept_service(self, continuation, handler_call_details):
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                if hmac.compare_digest(value.encode(), self._token) or (
                        handler_call_details.method in CONTAINER_METHODS and value in self._container_tokens):
                    # A request that doesn't parse: INVALID_ARGUMENT naming the RPC, not gRPC's UNKNOWN.
                    return decoding_errors_named(await continuation(handler_call_details),
                                                 handler_call_details.method)
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

    # Raw bytes: nothing a caller without the token sends is parsed (garbage is refused for the token too).
    serializers = dict(request_deserializer=None, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:  # ContainerExec
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **serializers)
    if handler.request_streaming:  # PutBlob, uploads
        return grpc.stream_unary_rpc_method_handler(refuse_unary, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **serializers)
    return grpc.unary_unary_rpc_method_handler(refuse_unary, **serializers)

"""A synchronous gRPC client for one agent.

Every call carries the agent's token. Connection failures become
``AgentLostError`` with what to do about them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grpc
import grpc.experimental

from nbmodal._runtime.local_agent import AgentAddress
from nbmodal._runtime.local_runs import LocalRuns
from nbmodal._runtime.run_stream import RunStream
from nbmodal.exceptions import AgentError, AgentLostError, NotFoundError, VersionMismatchError
from nbmodal_wire import MESSAGE_SIZE_OPTIONS, PROTOCOL_VERSION, TOKEN_METADATA_KEY, __version__, pb
from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

CLIENT_PYTHON = "%d.%d" % sys.version_info[:2]
# Run and Attach streams are read by one thread: gRPC's single-threaded
# unary-stream path roughly halves their latency.
_CHANNEL_OPTIONS = [*MESSAGE_SIZE_OPTIONS, (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]


class AgentClient:
    def __init__(self, address: AgentAddress, label: str = "local agent") -> None:
        self.address = address
        self.label = label
        self._channel = grpc.insecure_channel(f"{address.host}:{address.port}", options=_CHANNEL_OPTIONS)
        self._stub = AgentStub(self._channel)
        self._metadata = ((TOKEN_METADATA_KEY, address.token),)
        self.hello = self._hello()
        # Attached runs go one after another on one long-lived stream (run_stream.py), else a Run call each;
        # on this machine's own agent, first on its Unix socket (local_runs.py), gRPC's cost left out.
        self._run_stream = RunStream(self._stub.RunStream, self._stub.Run, self._metadata)
        self._local_runs = LocalRuns.for_agent(address.state_dir, address.token, self.hello.pid)

    def _hello(self) -> pb.HelloReply:
        try:
            reply = self._stub.Hello(
                pb.HelloRequest(protocol_version=PROTOCOL_VERSION, client_version=__version__,
                                client_python=CLIENT_PYTHON),
                metadata=self._metadata, timeout=15)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None
        if reply.protocol_version != PROTOCOL_VERSION:
            raise VersionMismatchError(
                f"the {self.label} (nbmodal {reply.agent_version}) speaks protocol {reply.protocol_version}, "
                f"this notebook's nbmodal {__version__} speaks {PROTOCOL_VERSION}. Restart the agent with this "
                f"version: `nbmodal agent stop` (the next cell starts a new one), or install nbmodal "
                f"{reply.agent_version} in this kernel.")
        return reply

    # -- runs ---------------------------------------------------------------

    def run(self, request: pb.RunRequest) -> grpc.Call:
        """Start a run; iterate the returned call for its events, ``.cancel()`` to stop following."""
        streamed: grpc.Call | None = self._local_runs.start(request) if self._local_runs is not None else None
        if streamed is None:
            streamed = self._run_stream.start(request)
        return streamed if streamed is not None else self._stub.Run(request, metadata=self._metadata)

    def submit(self, request: pb.RunRequest) -> pb.RunInfo:
        return self._unary(self._stub.Submit, request)

    def attach(self, run_id: str, after_seq: int = 0, follow: bool = True, timeout: float | None = None) -> grpc.Call:
        return self._stub.Attach(pb.AttachRequest(run_id=run_id, after_seq=after_seq, follow=follow),
                                 metadata=self._metadata, timeout=timeout)

    def cancel(self, run_id: str, force: bool = False) -> pb.RunInfo:
        return self._unary(self._stub.Cancel, pb.CancelRequest(run_id=run_id, force=force))

    def answer_input(self, run_id: str, request_seq: int, text: str, eof: bool = False) -> None:
        """Answer the stdin request (event ``request_seq``) a run waits in; ``AgentError`` if it no longer does."""
        self._unary(self._stub.InputAnswer, pb.InputAnswerRequest(run_id=run_id, request_seq=request_seq,
                                                                   text=text, eof=eof))

    def get_run(self, run_id: str) -> pb.RunInfo:
        return self._unary(self._stub.GetRun, pb.RunRef(run_id=run_id))

    def cluster_status(self, run_ids: list[str]) -> list[pb.ClusterMemberStatus]:
        """Where each gang member run stands on this agent (remote_agent/gangs.py)."""
        return list(self._unary(self._stub.ClusterStatus, pb.ClusterStatusRequest(run_ids=run_ids)).members)

    def cluster_go(self, run_id: str, env: dict[str, str]) -> None:
        """Start a ready gang member's code with its rank's environment."""
        self._unary(self._stub.ClusterGo, pb.ClusterGoRequest(run_id=run_id, env=env))

    def list_runs(self, limit: int = 0) -> list[pb.RunInfo]:
        return list(self._unary(self._stub.ListRuns, pb.ListRunsRequest(limit=limit)).runs)

    # -- sessions, containers, agent -----------------------------------------

    def list_sessions(self) -> list[pb.SessionInfo]:
        return list(self._unary(self._stub.ListSessions, pb.Empty()).sessions)

    def stop_session(self, name: str) -> None:
        self._unary(self._stub.StopSession, pb.SessionRef(name=name))

    def fetch_value(self, session: str, name: str) -> pb.FetchValueReply:
        return self._unary(self._stub.FetchValue, pb.FetchValueRequest(session=session, name=name))

    def dict_call(self, request: pb.DictRequest) -> pb.DictReply:
        return self._unary(self._stub.DictCall, request, timeout=None)

    def queue_call(self, request: pb.QueueRequest) -> pb.QueueReply:
        return self._unary(self._stub.QueueCall, request, timeout=None)

    def secret_call(self, request: pb.SecretRequest) -> pb.SecretReply:
        return self._unary(self._stub.SecretCall, request)

    def volume_call(self, request: pb.VolumeRequest) -> pb.VolumeReply:
        return self._unary(self._stub.VolumeCall, request, timeout=None)

    def replica_routes(self, request: pb.ReplicaRoutesRequest) -> pb.ReplicaRoutesReply:
        return self._unary(self._stub.ReplicaRoutes, request)

    def volume_upload(self, chunks) -> pb.VolumeFile:
        try:
            return self._stub.VolumeUpload(chunks, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def volume_download(self, request: pb.VolumeRequest):
        try:
            yield from self._stub.VolumeDownload(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def build_image(self, spec: pb.ImageSpec):
        """Build an image (or find it built); yields BuildEvents, the last one built or failed."""
        try:
            yield from self._stub.BuildImage(spec, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def image_call(self, request: pb.ImageRequest) -> pb.ImageReply:
        return self._unary(self._stub.ImageCall, request)

    def put_image_file(self, chunks) -> pb.LocalFile:
        try:
            return self._stub.PutImageFile((pb.BlobChunk(data=bytes(c)) for c in chunks), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def tunnel_call(self, request: pb.TunnelRequest) -> pb.TunnelReply:
        """Ports served from containers: open/close (a container's token), list."""
        return self._unary(self._stub.TunnelCall, request)

    def list_gpus(self) -> list[pb.GpuInfo]:
        return list(self._unary(self._stub.ListGpus, pb.Empty()).gpus)

    def list_containers(self) -> list[pb.ContainerInfo]:
        return list(self._unary(self._stub.ListContainers, pb.Empty()).containers)

    def stop_container(self, container_id: str) -> None:
        self._unary(self._stub.StopContainer, pb.ContainerRef(container_id=container_id))

    def container_exec(self, inputs: Iterator[pb.ExecInput]) -> grpc.Call:
        """A process inside a container (``inputs`` begins with ``start``); iterate the call for its output."""
        return self._stub.ContainerExec(inputs, metadata=self._metadata)

    def container_logs(self, container_id: str, follow: bool = False) -> grpc.Call:
        """A container's log as BlobChunks; with ``follow``, until the container has ended."""
        return self._stub.ContainerLogs(pb.ExecLogsRequest(container_id=container_id, follow=follow),
                                        metadata=self._metadata)

    # -- sandboxes (nbmodal/sandbox.py translates their errors: these raise grpc.RpcError) ----

    def sandbox_create(self, request: pb.SandboxCreateRequest) -> pb.SandboxInfo:
        return self._stub.SandboxCreate(request, metadata=self._metadata)

    def sandbox_call(self, request: pb.SandboxRequest, timeout: float | None = None) -> pb.SandboxReply:
        return self._stub.SandboxCall(request, metadata=self._metadata, timeout=timeout)

    def sandbox_exec(self, inputs: Iterator[pb.ExecInput]) -> grpc.Call:
        """ContainerExec in a sandbox: the first input's ExecStart.container_id names the sandbox."""
        return self._stub.SandboxExec(inputs, metadata=self._metadata)

    def sandbox_output(self, request: pb.SandboxOutputRequest) -> grpc.Call:
        return self._stub.SandboxOutput(request, metadata=self._metadata)

    def sandbox_stdin(self, request: pb.SandboxStdinRequest) -> None:
        self._stub.SandboxStdin(request, metadata=self._metadata, timeout=60)

    def sandbox_file(self, request: pb.SandboxFileRequest) -> pb.SandboxFileReply:
        return self._stub.SandboxFile(request, metadata=self._metadata)

    def host_stats(self) -> pb.HostStatsReply:
        return self._unary(self._stub.HostStats, pb.Empty())

    def put_blob(self, chunks) -> str:
        """Upload blob content (an iterable of bytes-like pieces); returns the blob id."""
        try:
            return self._stub.PutBlob((pb.BlobChunk(data=bytes(c)) for c in chunks), metadata=self._metadata).blob_id
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def get_blob(self, blob_id: str, delete: bool) -> bytearray:
        content = bytearray()
        try:
            for chunk in self._stub.GetBlob(pb.BlobRef(blob_id=blob_id, delete=delete), metadata=self._metadata):
                content += chunk.data
        except grpc.RpcError as exc:
            raise self._translate(exc) from None
        return content

    # -- deployed apps (nbmodal/_runtime/deployed.py) ---------------------------

    def deploy(self, request: pb.DeployRequest) -> pb.AppInfo:
        return self._unary(self._stub.Deploy, request, timeout=None).app

    def app_call(self, op: pb.AppOp, app: str = "") -> pb.AppReply:
        return self._unary(self._stub.AppCall, pb.AppRequest(op=op, app=app))

    def app_logs(self, app: str, follow: bool = False) -> Iterator[pb.AppLogLine]:
        try:
            yield from self._stub.AppLogs(pb.AppRequest(app=app, follow=follow), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def shutdown(self) -> None:
        self._unary(self._stub.Shutdown, pb.Empty())

    def close(self) -> None:
        if self._local_runs is not None:
            self._local_runs.close()
        self._run_stream.close()
        self._channel.close()

    def _unary(self, method, request, timeout: float | None = 60):
        try:
            return method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: grpc.RpcError) -> Exception:
        return translate_rpc_error(exc, self)


def translate_rpc_error(exc: grpc.RpcError, client: AgentClient) -> Exception:
    """The exception a failed call raises in the notebook: ``NotFoundError`` for what isn't on the agent,
    ``ValueError`` for a request it refused, ``AgentLostError`` when the agent is gone."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return AgentLostError(
            f"lost the connection to the {client.label} (pid {client.address.pid}, port {client.address.port}): "
            f"it stopped or was killed. Its log is {client.address.state_dir}/agent.log. "
            f"Run the cell again to start a new agent.")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AgentError(f"the {client.label} refused this client: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ValueError(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # the agent's state dir is full: its words say what to do
        return AgentError(f"{client.label}: {details}")
    return AgentError(f"{client.label}: {code.name if code else 'error'}: {details}")


def iterate_events(call: grpc.Call, client: AgentClient) -> Iterator[pb.RunEvent]:
    """Events of a Run/Attach call, with connection errors translated."""
    try:
        yield from call
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.CANCELLED:
            return
        raise translate_rpc_error(exc, client) from None

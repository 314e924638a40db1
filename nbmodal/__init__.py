"""nbmodal: Modal's programming model on your own machines, driven from Jupyter.

    %load_ext nbmodal

    %%remote
    result = expensive(data)      # data, expensive come from the notebook

or, from Python, as Modal code (``import nbmodal as modal`` works)::

    app = nbmodal.App("demo")

    @app.function()
    def square(x):
        return x * x

    square.remote(4)   # 16, computed by the agent

Every public name of Modal's API reference exists here; the README's "Modal
compatibility" table says which are honoured, which are accepted without
effect on one's own hosts, and which are not available yet (using those
raises ``nbmodal.exception.NotAvailableError``, an ``InvalidError``).
"""

import contextlib
from collections.abc import Iterator

from nbmodal import call_graph, container_process, exception, experimental, file_io, gpu, io_streams
from nbmodal._file_patterns import FilePatternMatcher
from nbmodal._runtime.batching import batched
from nbmodal._runtime.context import current_function_call_id, current_input_id, is_local
from nbmodal._runtime.fanout import Retries, concurrent
from nbmodal._unavailable import (
    Client,
    CloudBucketMount,
    NetworkFileSystem,
    Proxy,
    SandboxSnapshot,
)
from nbmodal.app import App, Function, FunctionCall
from nbmodal.cls import Cls, enter, exit, method, parameter
from nbmodal.cluster import ClusterInfo, clustered, get_cluster_info, last_cluster_run
from nbmodal.dict import Dict
from nbmodal.exceptions import (
    AgentError,
    AgentLostError,
    CaptureError,
    Error,
    GpuUnavailableError,
    ImageBuildError,
    ImageDefinitionError,
    InvalidGpuError,
    MemoryLimitExceededError,
    NbmodalError,
    NotFoundError,
    RemoteError,
    ResourcesUnavailableError,
    RunLostError,
    SlurmJobError,
    VersionMismatchError,
)
from nbmodal.image import Image
from nbmodal.interactive import interact
from nbmodal.queue import Queue
from nbmodal.results import RemoteValue, ResultWarning
from nbmodal.sandbox import Sandbox
from nbmodal.schedule import Cron, Period
from nbmodal.secret import Secret
from nbmodal.volume import Volume
from nbmodal.web import Tunnel, asgi_app, fastapi_endpoint, forward, web_endpoint, web_server, wsgi_app
from nbmodal_wire import __version__

__all__ = [
    "AgentError", "AgentLostError", "App", "CaptureError", "Client", "ClusterInfo", "clustered", "get_cluster_info",
    "last_cluster_run", "CloudBucketMount", "Cls", "Cron", "Dict",
    "Error", "FilePatternMatcher", "Function", "FunctionCall", "GpuUnavailableError", "Image", "ImageBuildError",
    "ImageDefinitionError", "InvalidGpuError", "MemoryLimitExceededError", "NbmodalError", "NetworkFileSystem",
    "NotFoundError", "Period", "Proxy", "Queue", "RemoteError", "RemoteValue", "ResourcesUnavailableError",
    "ResultWarning", "Retries", "RunLostError", "Sandbox", "SandboxSnapshot", "Secret", "SlurmJobError", "Tunnel",
    "VersionMismatchError", "Volume", "asgi_app", "batched", "call_graph", "concurrent", "container_process",
    "current_function_call_id", "current_input_id", "enable_output", "enter", "exception", "exit", "experimental",
    "fastapi_endpoint", "file_io", "forward", "gpu", "interact", "io_streams", "is_local", "load_ipython_extension",
    "method", "parameter", "web_endpoint", "web_server", "wsgi_app", "__version__",
]


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Accepted for Modal code: output already streams here (prints, logs, build logs, progress).

    Example::

        with nbmodal.enable_output():
            with app.run():
                f.remote()
    """
    yield


def load_ipython_extension(ipython) -> None:
    """``%load_ext nbmodal``: registers ``%%remote`` and ``%nbmodal``."""
    from nbmodal.magics import RemoteMagics

    ipython.register_magics(RemoteMagics)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext nbmodal``: removes ``%%remote``, ``%nbmodal`` and ``%volume``."""
    magics = ipython.magics_manager.magics
    for name in ("remote", "image"):
        magics["cell"].pop(name, None)
    for name in ("nbmodal", "volume", "image"):
        magics["line"].pop(name, None)
    from nbmodal.cell_transforms import forget_remote_transforms

    forget_remote_transforms(ipython)

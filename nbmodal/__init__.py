"""nbmodal: Modal's programming model on your own machines, driven from Jupyter.

    %load_ext nbmodal

    %%remote
    result = expensive(data)      # data, expensive come from the notebook

or, from Python::

    app = nbmodal.App("demo")

    @app.function()
    def square(x):
        return x * x

    square.remote(4)   # 16, computed by the agent
"""

from nbmodal._runtime.fanout import Retries, concurrent
from nbmodal.app import App, Function, FunctionCall
from nbmodal.cls import enter, exit, method, parameter
from nbmodal.dict import Dict
from nbmodal.exceptions import (
    AgentError,
    AgentLostError,
    CaptureError,
    GpuUnavailableError,
    ImageBuildError,
    ImageDefinitionError,
    NbmodalError,
    NotFoundError,
    RemoteError,
    ResourcesUnavailableError,
    RunLostError,
    SlurmJobError,
    VersionMismatchError,
)
from nbmodal.image import Image
from nbmodal.queue import Queue
from nbmodal.results import RemoteValue, ResultWarning
from nbmodal.volume import Volume
from nbmodal_wire import __version__

__all__ = [
    "AgentError", "AgentLostError", "App", "CaptureError", "Dict", "Function", "FunctionCall",
    "GpuUnavailableError", "Image", "ImageBuildError", "ImageDefinitionError", "NbmodalError", "NotFoundError",
    "Queue", "RemoteError", "RemoteValue", "ResourcesUnavailableError", "ResultWarning", "Retries", "RunLostError",
    "SlurmJobError", "VersionMismatchError", "Volume", "__version__",
    "concurrent", "enter", "exit", "method", "parameter", "load_ipython_extension",
]


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

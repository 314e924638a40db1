"""A matplotlib backend for containers: Agg rendering, ``show()`` sends figures
to the notebook. Containers get ``MPLBACKEND=module://remote_agent.worker.mpl_backend``.
"""

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args, **kwargs) -> None:
    from remote_agent.worker.display import flush_figures

    flush_figures()

"""``nbmodal run NOTEBOOK``: execute a notebook headless with a real kernel.

Outputs stream to the terminal as the kernel produces them (remote output
included, since %%remote writes it into the cell), and the executed notebook
is saved with its outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from nbmodal.output import visible_line


class _ThisPythonKernels(KernelSpecManager):
    """Every notebook runs on this interpreter's ipykernel, where nbmodal is installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name=f"Python {sys.version_info.major}.{sys.version_info.minor}",
                          language="python", resource_dir="")


class _EchoingClient(NotebookClient):
    def output(self, outs, msg, display_id, cell_index):
        _echo(msg)
        return super().output(outs, msg, display_id, cell_index)


def _echo(msg: dict) -> None:
    kind, content = msg["msg_type"], msg["content"]
    if kind == "stream":
        target = sys.stderr if content.get("name") == "stderr" else sys.stdout
        target.write(content.get("text", ""))
        target.flush()
    elif kind in ("display_data", "execute_result"):
        text = content.get("data", {}).get("text/plain")
        if text:
            print(text, flush=True)
    elif kind == "error":
        print("\n".join(content.get("traceback", [])), file=sys.stderr, flush=True)


def default_output_path(notebook: Path) -> Path:
    return notebook.with_name(notebook.stem + ".executed.ipynb")


def run_notebook(path: Path, output: Path | None = None, timeout: float | None = None) -> int:
    """Execute ``path``; save it with outputs to ``output``. Returns a process exit code."""
    notebook = nbformat.read(path, as_version=4)
    output = output or default_output_path(path)
    client = _EchoingClient(
        notebook, timeout=timeout, kernel_name="python3", kernel_manager_class=_kernel_manager_class(),
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no start-up chatter in the terminal
        resources={"metadata": {"path": str(path.parent.resolve())}})
    failed = None
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = exc
    coalesce_streams(notebook)
    nbformat.write(notebook, output)
    if failed is not None:
        print(f"\nnbmodal run: {path} failed; the executed notebook is {output}", file=sys.stderr)
        return 1
    print(f"nbmodal run: executed {path}; saved {output}", file=sys.stderr)
    return 0


def coalesce_streams(notebook) -> None:
    """Merge consecutive stream outputs and keep only the final state of redrawn lines."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        merged: list = []
        for out in cell.get("outputs", []):
            if (out.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == out.name):
                merged[-1].text += out.text
            else:
                merged.append(out)
        for out in merged:
            if out.output_type == "stream" and "\r" in out.text:
                out.text = "\n".join(visible_line(line) for line in out.text.replace("\r\n", "\n").split("\n"))
        cell.outputs = merged


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class ThisPythonKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("kernel_spec_manager", _ThisPythonKernels())
            super().__init__(**kwargs)

    return ThisPythonKernelManager

"""Execute notebooks built from cell sources with a real kernel (nbclient)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from nbmodal.notebook_runner import _kernel_manager_class, coalesce_streams

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ExecutedNotebook:
    def __init__(self, nb, raw_cells: list, error: CellExecutionError | None) -> None:
        self.nb = nb
        self.raw_cells = raw_cells  # outputs as the kernel sent them, before merging streams
        self.error = error

    def raw_stream(self, index: int, name: str = "stdout") -> str:
        return "".join(o.text for o in self.raw_cells[index].get("outputs", [])
                       if o.output_type == "stream" and o.name == name)

    def outputs(self, index: int) -> list:
        return self.nb.cells[index].get("outputs", [])

    def stream(self, index: int, name: str = "stdout") -> str:
        return "".join(o.text for o in self.outputs(index) if o.output_type == "stream" and o.name == name)

    def error_output(self, index: int):
        errors = [o for o in self.outputs(index) if o.output_type == "error"]
        return errors[0] if errors else None

    def error_text(self, index: int) -> str:
        err = self.error_output(index)
        return ANSI.sub("", "\n".join(err.traceback)) if err else ""

    def data(self, index: int, output_type: str | None = None) -> list[dict]:
        return [o.data for o in self.outputs(index)
                if o.output_type in ("display_data", "execute_result")
                and (output_type is None or o.output_type == output_type)]

    def executed(self, index: int) -> bool:
        return self.nb.cells[index].get("execution_count") is not None


def run_cells(cells: list[str], cwd: Path | None = None, timeout: int = 120,
              allow_errors: bool = False, load_ext: bool = True) -> ExecutedNotebook:
    """Run cells top to bottom in a fresh kernel, as Run All would."""
    sources = (["%load_ext nbmodal"] if load_ext else []) + list(cells)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    return run_notebook(nb, cwd=cwd, timeout=timeout, allow_errors=allow_errors, offset=1 if load_ext else 0)


def run_notebook(nb, cwd: Path | None = None, timeout: int = 120, allow_errors: bool = False,
                 offset: int = 0) -> ExecutedNotebook:
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            kernel_manager_class=_kernel_manager_class(),
                            resources={"metadata": {"path": str(cwd or Path.cwd())}})
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = exc
    raw_cells = copy.deepcopy(nb.cells)[offset:]
    coalesce_streams(nb)
    nb.cells = nb.cells[offset:]
    return ExecutedNotebook(nb, raw_cells, error)

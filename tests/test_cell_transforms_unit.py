"""IPython's preparation of a %%remote cell kept by source (nbmodal/cell_transforms.py): the same text and
async answer as IPython's, worked out once, and IPython's own work again whenever it could differ."""

from __future__ import annotations

import pytest
from IPython.core.async_helpers import _should_be_async
from IPython.core.inputtransformer2 import TransformerManager, leading_empty_lines
from IPython.core.interactiveshell import InteractiveShell

from nbmodal.cell_transforms import (
    MAX_KEPT,
    MAX_KEPT_SOURCE,
    KeptAsyncCheck,
    KeptTransforms,
    forget_remote_transforms,
    keep_remote_transforms,
)

pytestmark = pytest.mark.unit

SOURCES = ["%%remote\npass", "%%remote gpu=H100 timeout=60\nx = 1\nprint(f'{x!r}')\n", "%%remote\n>>> y = 2",
           "%%remote\ns = '''a\nb'''\n!ls {s}\n", "%%remote?"]


class CountingManager(TransformerManager):
    """IPython's manager, counting the transforms it does itself."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def transform_cell(self, cell: str) -> str:
        self.calls += 1
        return super().transform_cell(cell)


def kept_manager() -> tuple[CountingManager, KeptTransforms]:
    manager = CountingManager()
    kept = KeptTransforms(manager, never_async=lambda text: not _should_be_async(text))
    return manager, kept


@pytest.mark.parametrize("source", SOURCES)
def test_a_remote_cell_is_transformed_as_ipython_does_and_only_once(source):
    manager, kept = kept_manager()
    expected = TransformerManager().transform_cell(source)
    assert kept(source) == expected and manager.calls == 1
    assert kept(source) == expected and manager.calls == 1  # the second time: kept


def test_other_cells_are_transformed_by_ipython_every_time():
    manager, kept = kept_manager()
    for _ in range(2):
        assert kept("%time x = 1") == TransformerManager().transform_cell("%time x = 1")
        assert kept("\n%%remote\npass") == TransformerManager().transform_cell("\n%%remote\npass")
    assert manager.calls == 4 and not kept.sync


def test_a_transformer_of_someone_elses_turns_keeping_off_until_it_is_gone():
    manager, kept = kept_manager()
    kept("%%remote\nx = 1")

    def shout(lines: list[str]) -> list[str]:
        return [line.replace("x", "X") for line in lines]

    manager.cleanup_transforms.append(shout)
    assert "X = 1" in kept("%%remote\nx = 1") and "X = 1" in kept("%%remote\nx = 1")
    assert manager.calls == 3  # IPython's (with the user's transformer) every time
    manager.cleanup_transforms.remove(shout)
    assert "x = 1" in kept("%%remote\nx = 1") and "x = 1" in kept("%%remote\nx = 1")
    assert manager.calls == 4  # transformed anew once, then kept again


def test_a_changed_list_of_ipythons_own_transformers_transforms_anew():
    # ipykernel's debugger takes leading_empty_lines out while it runs, and puts it back after.
    manager, kept = kept_manager()
    kept("%%remote\npass")
    manager.cleanup_transforms.remove(leading_empty_lines)
    kept("%%remote\npass")
    assert manager.calls == 2
    manager.cleanup_transforms.insert(0, leading_empty_lines)
    kept("%%remote\npass")
    assert manager.calls == 3


def test_an_error_is_raised_every_time_and_never_kept():
    class Failing(CountingManager):
        def transform_cell(self, cell: str) -> str:
            self.calls += 1
            raise SyntaxError("unterminated string")

    manager = Failing()
    kept = KeptTransforms(manager)
    for _ in range(2):
        with pytest.raises(SyntaxError):
            kept("%%remote\npass")
    assert manager.calls == 2


def test_a_large_cell_is_transformed_each_time():
    manager, kept = kept_manager()
    large = "%%remote\nx = '" + "a" * MAX_KEPT_SOURCE + "'"
    assert kept(large) == kept(large) == TransformerManager().transform_cell(large)
    assert manager.calls == 2 and not kept._kept


def test_what_is_kept_is_bounded():
    manager, kept = kept_manager()
    for n in range(MAX_KEPT + 10):
        kept(f"%%remote\nx = {n}")
    assert len(kept._kept) == MAX_KEPT and len(kept.sync) == MAX_KEPT
    kept(f"%%remote\nx = {MAX_KEPT + 9}")  # the newest are still there
    assert manager.calls == MAX_KEPT + 10


def test_the_async_check_answers_a_kept_text_at_once_and_asks_ipython_otherwise():
    asked = []

    def check(raw_cell: str, **kwargs) -> bool:
        asked.append(raw_cell)
        return kwargs["transformed_cell"] is not None and _should_be_async(kwargs["transformed_cell"])

    manager, kept = kept_manager()
    async_check = KeptAsyncCheck(check, kept)
    text = kept("%%remote\nawait x")  # its body is a string: the magic's call needs no event loop
    assert async_check("%%remote\nawait x", transformed_cell=text) is False and asked == []
    assert async_check("await x", transformed_cell="await x\n") is True and asked == ["await x"]
    assert async_check("pass", transformed_cell=None) is False and asked == ["await x", "pass"]


@pytest.fixture()
def shell():
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    yield shell
    forget_remote_transforms(shell)


def test_the_extension_keeps_remote_cells_and_forgets_them_on_unload(shell):
    assert isinstance(shell, InteractiveShell)
    shell.run_line_magic("load_ext", "nbmodal")
    assert isinstance(shell.input_transformer_manager.transform_cell, KeptTransforms)
    shell.run_line_magic("unload_ext", "nbmodal")
    assert "transform_cell" not in vars(shell.input_transformer_manager)
    assert "should_run_async" not in vars(shell)


def test_a_shell_keeps_remote_cells_once_and_forgets_on_unload(shell):
    keep_remote_transforms(shell)
    keep_remote_transforms(shell)  # a second %load_ext changes nothing
    manager = shell.input_transformer_manager
    assert isinstance(manager.transform_cell, KeptTransforms)
    assert not isinstance(manager.transform_cell.transform, KeptTransforms)
    assert isinstance(shell.should_run_async, KeptAsyncCheck)
    text = shell.transform_cell("%%remote\nawait x")
    assert text == "get_ipython().run_cell_magic('remote', '', 'await x\\n')\n"
    assert shell.should_run_async("%%remote\nawait x", transformed_cell=text,
                                  preprocessing_exc_tuple=None) is False
    assert shell.should_run_async("await x", transformed_cell="await x\n", preprocessing_exc_tuple=None) \
        is shell.autoawait
    forget_remote_transforms(shell)
    assert "transform_cell" not in vars(manager) and "should_run_async" not in vars(shell)
    assert shell.transform_cell("%%remote\npass") == "get_ipython().run_cell_magic('remote', '', 'pass\\n')\n"

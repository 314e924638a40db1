"""Pure logic: how redrawn lines are forwarded, and how %%remote options parse."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbmodal._remote_options import parse_cell_options
from nbmodal.output import LineRedraws, visible_line

pytestmark = pytest.mark.unit


def collect(interval=0.0):
    written = []
    return LineRedraws(written.append, interval=interval), written


def test_plain_text_passes_through_unchanged():
    lines, written = collect()
    for chunk in ("hel", "lo\nwor", "ld\n", "no newline"):
        lines.feed(chunk)
    assert "".join(written) == "hello\nworld\nno newline"


def test_redraws_collapse_to_what_a_terminal_shows():
    lines, written = collect(interval=3600)  # no redraw gets through the throttle
    lines.feed("\r 10%")
    for pct in range(20, 101, 10):
        lines.feed(f"\r{pct:3d}%")
    lines.feed("\n")
    assert "".join(written) == "\r 10%\r100%\n"
    assert visible_line("".join(written).split("\n")[0]) == "100%"


def test_throttled_redraws_still_end_on_the_final_state():
    lines, written = collect(interval=3600)
    lines.feed("start\n")
    for i in range(1000):
        lines.feed(f"\rstep {i}")
    lines.flush()
    text = "".join(written)
    assert text.count("\r") <= 3 and text.endswith("step 999")


def test_options_parse_and_bad_ones_name_the_problem():
    options = parse_cell_options(["session=train", "timeout=30", "grace=2.5", "max_result=64MiB"], detach=True)
    assert (options.session, options.timeout, options.grace, options.max_result_bytes, options.detach) == (
        "train", 30.0, 2.5, 64 * 1024 * 1024, True)
    assert parse_cell_options(["max_result=500MB"], False).max_result_bytes == 500_000_000
    assert parse_cell_options(["gpu=H100:2,a10g", "host=local"], False).gpu == "H100:2,a10g"
    for tokens, message in [
        (["timeout=soon"], "timeout='soon' must be a number of seconds"),
        (["timeout=0"], "must be more than 0 seconds"),
        (["colour=red"], "unknown option 'colour'"),
        (["session"], "expected key=value"),
        (["session=a b/c"], "session name 'a b/c' must be"),
        (["max_result=lots"], "max_result='lots' is not a size"),
        (["gpu=H1000"], "unknown GPU type 'H1000'"),
        (["host=nowhere"], "no host named 'nowhere' is configured"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_cell_options(tokens, False)


def test_the_extension_loads_and_unloads():
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbmodal")
    assert "remote" in shell.magics_manager.magics["cell"] and "volume" in shell.magics_manager.magics["line"]
    shell.run_line_magic("unload_ext", "nbmodal")
    assert "remote" not in shell.magics_manager.magics["cell"]
    assert "nbmodal" not in shell.magics_manager.magics["line"]

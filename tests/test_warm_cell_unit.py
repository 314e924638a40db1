"""What a warm %%remote cell reuses (nbmodal/warm_cell.py and the caches beside it), and when it doesn't."""

from __future__ import annotations

import io
import sys
import warnings

import pytest
from IPython.core.error import UsageError

import nbmodal.magics
from nbmodal import hosts, warm_cell
from nbmodal._remote_options import cell_options, parse_cell_options
from nbmodal._runtime import invocation
from nbmodal._runtime.invocation import CELL_FIRST_LINE, RunTarget, container_spec
from nbmodal.capture import capturable_names, pack_inputs, select_inputs
from nbmodal.exceptions import InvalidError
from nbmodal.output import StreamSink
from nbmodal.results import cell_values
from nbmodal.serialization import dumps
from nbmodal_wire import pb
from nbmodal_wire.cellcode import parse_cell

pytestmark = pytest.mark.unit


# --- the cell's source -------------------------------------------------------------------------------
def test_a_source_is_prepared_once_and_a_changed_source_anew():
    first = warm_cell.prepare_cell("# setup\nfiles = !ls {data_dir}\n")
    assert warm_cell.prepare_cell("# setup\nfiles = !ls {data_dir}\n") is first
    assert first.label == "files = !ls {data_dir}"
    assert first.code.startswith("# setup\nfiles = _nbmodal_shell.getoutput(") and first.parses
    changed = warm_cell.prepare_cell("# setup\nfiles = !ls {other_dir}\n")
    assert changed is not first and "other_dir" in changed.code


def test_a_cell_too_large_to_keep_is_prepared_each_time_alike():
    large = "data = " + repr("x" * warm_cell.MAX_CACHED_SOURCE) + "\nprint(len(data), n)\n"
    first, again = warm_cell.prepare_cell(large), warm_cell.prepare_cell(large)
    assert first == again and first is not again and first.label.startswith("data = 'xxx")
    assert capturable_names(large) == capturable_names(large) == ("print", "n", "len")
    assert capturable_names(large) is not capturable_names(large)


def test_a_syntax_error_is_named_after_the_running_cell_each_time():
    prepared = warm_cell.prepare_cell("x = 1\ny = (\n")
    assert not prepared.parses
    for number in (3, 4):
        with pytest.raises(SyntaxError) as caught:
            prepared.check_syntax(f"<remote cell In[{number}]>")
        assert caught.value.filename == f"<remote cell In[{number}]>"
        with pytest.raises(SyntaxError) as directly:
            parse_cell("x = 1\ny = (\n", f"<remote cell In[{number}]>", first_line=CELL_FIRST_LINE)
        assert caught.value.args == directly.value.args  # the error parsing it here would give
    warm_cell.prepare_cell("x = 1\n").check_syntax("<remote cell In[5]>")  # a good cell: nothing raised


def test_a_refused_line_is_refused_every_time():
    for _ in range(2):
        with pytest.raises(InvalidError):
            warm_cell.prepare_cell("%cd /tmp\nx = 1\n")


def test_the_names_are_kept_but_the_values_are_read_anew():
    code = "y = f(x)\nprint(_i3, _3, In, y)"
    assert capturable_names(code) == ("f", "x", "print")
    assert capturable_names(code) is capturable_names(code)
    namespace = {"f": len, "x": [1, 2], "_i3": "old input", "_3": "old output", "In": []}
    assert select_inputs(code, namespace) == {"f": len, "x": [1, 2]}
    namespace["x"] = [3]
    namespace["print"] = "a notebook variable shadowing the builtin"
    assert select_inputs(code, namespace) == {"f": len, "x": [3], "print": namespace["print"]}
    assert select_inputs(code, namespace, skip={"x"}) == {"f": len, "print": namespace["print"]}
    assert capturable_names("y = g(x)") == ("g", "x")  # another source: its own names


def test_no_inputs_pack_to_the_same_bytes_as_packing_them():
    packed_by = []

    def pack(value):
        packed_by.append(value)
        return dumps(value), ""

    assert pack_inputs({}, pack) == (dumps({}), "")
    assert pack_inputs({"x": 1}, pack) == (dumps({"x": 1}), "")
    assert {"x": 1} in packed_by  # values are always packed


# --- options and placement -----------------------------------------------------------------------------
def test_a_line_is_parsed_once_into_a_new_options_object_each_time():
    tokens = ("gpu=H100:2", "volumes=ckpt:/ckpt", "timeout=600", "secrets=hf")
    first, second = cell_options(tokens, False), cell_options(tokens, False)
    assert first == second == parse_cell_options(list(tokens), False)
    assert first is not second and first.volumes is not second.volumes
    first.image, first.volumes["/data"] = "torch", "data"  # the magic fills in the image
    assert cell_options(tokens, False) == parse_cell_options(list(tokens), False)
    assert cell_options(tokens, True).detach and not cell_options(tokens, False).detach
    assert cell_options(("timeout=60",), False).timeout == 60.0


def test_a_mistake_is_the_same_usage_error_every_time():
    for _ in range(2):
        with pytest.raises(UsageError, match="timeout='soon' must be a number of seconds"):
            cell_options(("timeout=soon",), False)
        with pytest.raises(UsageError, match="unknown option 'colour'"):
            cell_options(("colour=red",), False)


def test_a_host_is_checked_against_the_hosts_file_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path))
    with pytest.raises(UsageError, match="no host named 'gpu9'"):
        cell_options(("host=gpu9", "timeout=5"), False)
    hosts.add_host("gpu9", "alice@gpu9.lab")
    assert cell_options(("host=gpu9", "timeout=5"), False).host == "gpu9"
    hosts.remove_host("gpu9")
    with pytest.raises(UsageError, match="no host named 'gpu9'"):
        cell_options(("host=gpu9", "timeout=5"), False)


def test_the_hosts_file_follows_nbmodal_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path / "a"))
    assert hosts.config_path() == tmp_path / "a" / "config.toml"
    hosts.add_host("alpha", "alice@alpha")
    assert list(hosts.load_hosts()) == ["alpha"]
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path / "b"))
    assert hosts.config_path() == tmp_path / "b" / "config.toml" and hosts.load_hosts() == {}
    hosts.add_host("beta", "bob@beta")
    assert list(hosts.load_hosts()) == ["beta"]


def test_a_spec_is_built_once_per_distinct_options():
    spec = warm_cell.cell_spec("H100", {"/ckpt": "ckpt"}, 2.0, 4096)
    assert spec == container_spec("H100", {"/ckpt": "ckpt"}, 2.0, 4096)
    assert warm_cell.cell_spec("H100", {"/ckpt": "ckpt"}, 2.0, 4096) is spec
    for other in (("A100", {"/ckpt": "ckpt"}, 2.0, 4096), ("H100", {"/data": "ckpt"}, 2.0, 4096),
                  ("H100", {"/ckpt": "ckpt"}, (1.0, 4.0), 4096), ("H100", {"/ckpt": "ckpt"}, 2.0, 8192)):
        assert warm_cell.cell_spec(*other) == container_spec(*other) != spec


class _Connection:
    """A connection whose client changes when its agent is restarted."""

    name = "local"

    def __init__(self) -> None:
        self.live = object()

    def client(self):
        return self.live


def test_a_target_is_reused_only_through_the_same_live_client():
    resolved = []

    def resolve(connection, spec):
        target = RunTarget(connection, connection.client(), spec, transfer=None)  # type: ignore[arg-type]
        resolved.append(target)
        return target

    connection, spec = _Connection(), warm_cell.cell_spec("", {}, 0.0, 0)
    first = invocation.reuse_target(connection, spec, resolve)
    assert invocation.reuse_target(connection, spec, resolve) is first and len(resolved) == 1
    connection.live = object()  # a restarted agent: a new client
    after_restart = invocation.reuse_target(connection, spec, resolve)
    assert after_restart is not first and after_restart.client is connection.live and len(resolved) == 2
    other_spec = warm_cell.cell_spec("T4", {}, 0.0, 0)
    assert invocation.reuse_target(connection, other_spec, resolve).spec is other_spec
    assert invocation.reuse_target(_Connection(), spec, resolve) not in (first, after_restart)  # another host
    warm_cell.forget_targets()
    assert invocation.reuse_target(connection, warm_cell.cell_spec("", {}, 0.0, 0), resolve) is not after_restart


# --- results and output --------------------------------------------------------------------------------
def test_a_cell_that_assigned_nothing_sets_nothing_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cell_values(pb.RunFinished(state=pb.SUCCEEDED), "", "local agent", fetch_blob=None) == {}  # type: ignore[arg-type]
    finished = pb.RunFinished(state=pb.SUCCEEDED, values={"x": dumps(41)}, modules={"m": "json"})
    assert cell_values(finished, "", "local agent", fetch_blob=None) == {"x": 41, "m": sys.modules["json"]}  # type: ignore[arg-type]
    left_out = pb.RunFinished(left_out=[pb.ValueInfo(name="lock", type_name="Lock", reason="can't pickle")])
    with pytest.warns(UserWarning, match="`lock` \\(Lock\\): can't pickle"):
        assert cell_values(left_out, "", "local agent", fetch_blob=None) == {}  # type: ignore[arg-type]


def test_output_streams_as_before(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    sink = StreamSink()
    sink.close()  # nothing printed: nothing written
    assert out.getvalue() == err.getvalue() == ""
    sink.output(pb.STDERR, "warn\npart")
    sink.output(pb.STDOUT, "a\nb")
    sink.output(pb.STDOUT, "")
    sink.close()
    assert (out.getvalue(), err.getvalue()) == ("a\nb", "warn\npart")


# --- the magic in a shell ------------------------------------------------------------------------------
@pytest.fixture()
def shell(monkeypatch):
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbmodal")
    seen: list = []
    monkeypatch.setattr(nbmodal.magics, "cell_options", lambda tokens, detach: seen.append(tokens) or
                        cell_options(("timeout=1",), detach))
    monkeypatch.setattr(nbmodal.magics, "run_cell", lambda shell, cell, options: None)
    shell.seen = seen
    yield shell
    shell.run_line_magic("unload_ext", "nbmodal")


def test_the_line_is_expanded_as_ipython_expands_a_cell_magic_line(shell):
    shell.register_magic_function(lambda line, cell: line, "cell", "echo_line")
    shell.user_ns.update(t=90, name="train")
    for line, tokens in (("timeout={t} session=$name", ("timeout=90", "session=train")),
                         ("timeout={t*2}", ("timeout=180",)), ("a={{x}} b=}}", ("a={x}", "b=}")),
                         ("a={undefined} b=$$", ("a={undefined}", "b=$$")), ("timeout=60", ("timeout=60",))):
        assert shell.run_cell_magic("echo_line", line, "pass").split() == list(tokens)
        shell.run_cell_magic("remote", line, "pass")
        assert shell.seen[-1] == tokens

    def run_both():  # IPython expands from the frame of its caller's caller, not its caller's
        t = 5  # noqa: F841
        return shell.run_cell_magic("echo_line", "timeout={t}", "pass"), shell.run_cell_magic(
            "remote", "timeout={t}", "pass")

    def caller():
        t = 7  # noqa: F841
        return run_both()

    assert caller()[0] == "timeout=7" and shell.seen[-1] == ("timeout=7",)


def test_the_cell_number_is_the_running_cells(shell):
    shell.run_cell("from nbmodal.warm_cell import current_cell_number", store_history=True)
    for _ in range(3):
        count = shell.execution_count
        shell.run_cell("number = current_cell_number(get_ipython())", store_history=True)
        assert shell.user_ns["number"] == count
    shell.run_cell("number = current_cell_number(get_ipython())", store_history=True)  # the same source again
    assert shell.user_ns["number"] == shell.execution_count - 1

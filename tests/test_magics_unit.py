"""One parser for ``nbmodal`` and ``%nbmodal``; ``%%remote`` options declared once. In-process, no agent."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import nbmodal.cli
from nbmodal._cli import build_parser
from nbmodal._remote_options import REMOTE_OPTIONS, options_help, parse_cell_options
from nbmodal.remote_cell import CellOptions
from nbmodal_wire import pb

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parent.parent / "README.md"

# A valid value of every %%remote option and what it parses to: a new option needs a line here.
SAMPLES = {
    "host": ("local", "local"),
    "image": ("torch_env", "torch_env"),
    "gpu": ("H100:2,a10g", "H100:2,a10g"),
    "cpu": ("2.5", 2.5),
    "memory": ("4096", 4096),
    "volumes": ("ckpt:/ckpt,data:/data", {"/ckpt": "ckpt", "/data": "data"}),
    "map": ("lr:lrs", ("lr", "lrs")),
    "session": ("train", "train"),
    "timeout": ("30s", 30.0),
    "grace": ("2.5", 2.5),
    "max_result": ("64MiB", 64 * 1024 * 1024),
    "secrets": ("hf,wandb", (pb.SecretSource(name="hf"), pb.SecretSource(name="wandb"))),
    "nodes": ("2", 2),
    "procs_per_node": ("8", 8),
}

# Every spelling the README and the tests use; each must keep parsing.
SPELLINGS = [
    ["run", "nb.ipynb"], ["run", "nb.ipynb", "-o", "out.ipynb", "--timeout", "60"],
    ["run", "--detach", "app.py::main", "--n", "3"], ["run", "app.py", "--detach"],
    ["secret", "create", "hf", "HF_TOKEN=x", "--from-dotenv", ".env", "--force"],
    ["secret", "create", "hf", "A=1", "--all-hosts"], ["secret", "list"], ["secret", "ls", "--host", "gpu1"],
    ["secret", "delete", "hf", "--host", "gpu1"],
    ["agent", "start"], ["agent", "stop"], ["agent", "status"],
    ["host", "add", "gpu1", "alice@gpu1.lab"],
    ["host", "add", "gpu2", "gpu2", "--ssh-config", "cfg", "--python", "/opt/py", "--accept-new-host-key",
     "--no-check"],
    ["host", "add", "cluster", "me@login", "--slurm", "--partition", "gpu", "--account", "lab", "--qos", "q",
     "--time", "04:00:00", "--sbatch-flags=--constraint=ib", "--gres-types", "H100=h100", "--callback-host", "l",
     "--slurm-env", "SLURM_CONF=/x"],
    ["host", "ls"], ["host", "rm", "gpu1"], ["host", "doctor", "gpu1"],
    ["volume", "create", "v"], ["volume", "ls"], ["volume", "ls", "v", "/docs"], ["volume", "put", "v", "f", "/f"],
    ["volume", "put", "v", "dir", "--force"], ["volume", "get", "v", "/f", "."], ["volume", "rm", "v", "/docs", "-r"],
    ["volume", "delete", "v", "--host", "h"],
    ["dict", "ls"], ["queue", "peek", "q", "-n", "3"], ["dict", "len", "d"], ["dict", "clear", "d"],
    ["queue", "delete", "q", "--host", "h"],
    ["image", "ls"], ["image", "build", "env.txt", "--force"], ["image", "rm", "torch", "--host", "h"],
    ["runs"], ["runs", "-n", "5", "--host", "h"], ["sessions"], ["sessions", "--host", "h"],
    ["containers", "--host", "h"], ["gpus"], ["gpus", "--host", "h"],
    ["logs", "r-1a2b3c4d"], ["logs", "r-1a2b3c4d", "-f"], ["attach", "r-1a2b3c4d"],
    ["stop", "r-1a2b3c4d", "--force"], ["stop", "train"],
    # Modal's spellings, beside ours
    ["container", "list"], ["session", "list", "--host", "h"], ["session", "stop", "train"], ["host", "list"],
    ["volume", "list"], ["dict", "list"], ["queue", "list"], ["image", "list"],
]


def _words(text: str) -> str:
    return " ".join(text.split())


# -- %%remote options ---------------------------------------------------------------------------------


def test_the_samples_cover_the_table_and_every_option_has_a_cell_options_field():
    assert set(SAMPLES) == {option.name for option in REMOTE_OPTIONS}
    fields = {f.name for f in dataclasses.fields(CellOptions)}
    assert all(option.field in fields for option in REMOTE_OPTIONS)


@pytest.mark.parametrize("option", REMOTE_OPTIONS, ids=lambda option: option.name)
def test_every_option_parses_into_its_field(option):
    value, expected = SAMPLES[option.name]
    parsed = parse_cell_options([f"{option.name}={value}"], detach=False)
    assert getattr(parsed, option.field) == expected
    untouched = {f.name for f in dataclasses.fields(CellOptions)} - {option.field}
    assert all(getattr(parsed, name) == getattr(CellOptions(), name) for name in untouched)


def test_all_options_on_one_line():
    tokens = [f"{name}={value}" for name, (value, _) in SAMPLES.items()]
    parsed = parse_cell_options(tokens, detach=True)
    assert parsed.detach
    for option in REMOTE_OPTIONS:
        assert getattr(parsed, option.field) == SAMPLES[option.name][1]


def test_the_defaults_the_help_shows_are_cell_options_defaults():
    for option in REMOTE_OPTIONS:
        if option.default:
            assert option.parse(option.default) == getattr(CellOptions(), option.field), option.name


def test_the_help_lists_every_option():
    from nbmodal.magics import RemoteMagics

    docstring = _words(RemoteMagics.remote.__doc__)
    for option in REMOTE_OPTIONS:
        assert f"{option.name}=" in options_help()
        assert f"{option.name}=" in docstring, option.name
        assert _words(option.describe()) in docstring  # argparse's %-formatting left the text as written
    assert "--detach" in docstring


def test_unknown_and_malformed_options_list_every_option():
    for tokens, start in ((["colour=red"], "%%remote: unknown option 'colour'"),
                          (["session"], "%%remote: expected key=value, got 'session'")):
        with pytest.raises(UsageError) as caught:
            parse_cell_options(tokens, detach=False)
        message = str(caught.value)
        assert message.startswith(start)
        listed = re.search(r"\(options: (.*)\)$", message).group(1)
        assert [name.strip() for name in listed.split(",") if name.strip() != "--detach"] == [
            option.name for option in REMOTE_OPTIONS]
    with pytest.raises(UsageError, match=r"--detach\)$"):
        parse_cell_options(["colour=red"], detach=False)


def test_the_readme_lists_every_option():
    options_line = _words(README.read_text().split("Options: `%%remote", 1)[1].split("`.", 1)[0])
    for option in REMOTE_OPTIONS:
        assert f"{option.name}=" in options_line, f"README's %%remote options miss {option.name}="


def test_cpu_and_memory_say_what_unit_they_take():
    with pytest.raises(UsageError, match="cpu='many' must be a number of cores"):
        parse_cell_options(["cpu=many"], detach=False)
    with pytest.raises(UsageError, match="memory='4G' must be a whole number of MiB"):
        parse_cell_options(["memory=4G"], detach=False)
    with pytest.raises(UsageError, match="volumes='ckpt': each mount is NAME:/path"):
        parse_cell_options(["volumes=ckpt"], detach=False)
    with pytest.raises(UsageError, match="map='lr' must be NAME:LIST"):
        parse_cell_options(["map=lr"], detach=False)


# -- one parser for nbmodal and %nbmodal -------------------------------------------------------------------


@pytest.fixture()
def shell():
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbmodal")
    yield shell
    shell.run_line_magic("unload_ext", "nbmodal")


@pytest.fixture()
def calls(monkeypatch):
    """The verb functions replaced by recorders: what each was called with."""
    from nbmodal._cli import runs, sessions, volume

    recorded: dict[str, tuple] = {}

    def recorder(name, result):
        def record(*args, **kwargs):
            recorded[name] = (args, kwargs)
            return result
        return record

    monkeypatch.setattr(runs, "runs_table", recorder("runs", "RUNS TABLE"))
    monkeypatch.setattr(runs, "show_logs", recorder("logs", None))
    monkeypatch.setattr(runs, "attach", recorder("attach", 42))
    monkeypatch.setattr(sessions, "sessions_table", recorder("sessions", "SESSIONS TABLE"))
    monkeypatch.setattr(volume, "volume_command", recorder("volume", "VOLUMES"))
    return recorded


@pytest.mark.parametrize("argv", SPELLINGS, ids=" ".join)
def test_every_spelling_parses_the_same_for_the_command_and_the_magic(argv):
    from nbmodal.magics import _verb_parser

    assert vars(build_parser("nbmodal").parse_args(argv)) == vars(_verb_parser().parse_args(argv))


def test_magic_runs_honours_host_and_limit(shell, calls, capsys):
    shell.run_line_magic("nbmodal", "runs --host gpu1 -n 5")
    assert calls["runs"] == ((5, "gpu1"), {}) and "RUNS TABLE" in capsys.readouterr().out
    shell.run_line_magic("nbmodal", "runs")
    assert calls["runs"] == ((20, None), {})


def test_magic_sessions_honours_host(shell, calls, capsys):
    shell.run_line_magic("nbmodal", "sessions --host gpu1")
    assert calls["sessions"] == (("gpu1",), {}) and "SESSIONS TABLE" in capsys.readouterr().out


def test_magic_logs_follows_with_f(shell, calls):
    shell.run_line_magic("nbmodal", "logs r-1a2b3c4d -f")
    (run_id, _sink), kwargs = calls["logs"]
    assert run_id == "r-1a2b3c4d" and kwargs == {"follow": True}
    shell.run_line_magic("nbmodal", "logs r-1a2b3c4d")
    assert calls["logs"][1] == {"follow": False}


def test_magic_attach_hands_over_the_shell_and_returns_the_result(shell, calls):
    assert shell.run_line_magic("nbmodal", "attach r-1a2b3c4d") == 42
    (run_id, _sink, given_shell), _ = calls["attach"]
    assert run_id == "r-1a2b3c4d" and given_shell is shell


def test_volume_magic_is_the_volume_verb(shell, calls, capsys):
    shell.run_line_magic("volume", "ls data /docs --host gpu1")
    (args,), _ = calls["volume"]
    assert (args.verb, args.name, args.path, args.host) == ("ls", "data", "/docs", "gpu1")
    assert "VOLUMES" in capsys.readouterr().out


def test_the_command_runs_the_same_verbs(calls, capsys):
    assert nbmodal.cli.main(["runs", "--host", "gpu1", "-n", "5"]) == 0
    assert calls["runs"] == ((5, "gpu1"), {}) and capsys.readouterr().out == "RUNS TABLE\n"
    assert nbmodal.cli.main(["logs", "r-1a2b3c4d", "-f"]) == 0
    assert calls["logs"][1] == {"follow": True}
    assert nbmodal.cli.main(["attach", "r-1a2b3c4d"]) == 0
    assert calls["attach"][0][2] is None and capsys.readouterr().out == "42\n"  # no shell: the result is printed


def test_the_command_reports_a_failing_verb_in_one_line(monkeypatch, capsys):
    from nbmodal._cli import runs
    from nbmodal.exceptions import NotFoundError

    def missing(*args, **kwargs):
        raise NotFoundError("no run 'r-00000000' on local (see `nbmodal runs`)")

    monkeypatch.setattr(runs, "show_logs", missing)
    assert nbmodal.cli.main(["logs", "r-00000000"]) == 1
    assert capsys.readouterr().err == "nbmodal logs: no run 'r-00000000' on local (see `nbmodal runs`)\n"


@pytest.mark.parametrize("line, message", [
    ("", "%nbmodal: the following arguments are required: COMMAND"),
    ("bogus", "%nbmodal: argument COMMAND: invalid choice: 'bogus'"),
    ("logs", "%nbmodal logs: the following arguments are required: run_id"),
    ("runs -n many", "%nbmodal runs: argument -n/--limit: invalid int value: 'many'"),
    ("runs --colour red", "%nbmodal: unrecognized arguments: --colour red"),
    ("volume", "%nbmodal volume: the following arguments are required: verb"),
    ('logs "r-1', "%nbmodal: No closing quotation"),
])
def test_magic_mistakes_are_usage_errors(shell, line, message):
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("nbmodal", line)
    assert str(caught.value).startswith(message)


def test_magic_help_prints_into_the_cell(shell, capsys):
    assert shell.run_line_magic("nbmodal", "-h") is None
    out = capsys.readouterr().out
    assert out.startswith("usage: %nbmodal") and "attach" in out and "volume" in out
    assert shell.run_line_magic("nbmodal", "logs -h") is None
    assert "-f, --follow" in capsys.readouterr().out
    assert shell.run_line_magic("volume", "-h") is None
    assert "usage: %nbmodal volume" in capsys.readouterr().out


def test_command_help_and_mistakes_exit_as_argparse_does(capsys):
    with pytest.raises(SystemExit) as exited:
        nbmodal.cli.main(["runs", "-n", "many"])
    assert exited.value.code == 2 and "invalid int value: 'many'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        nbmodal.cli.main(["-h"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("usage: nbmodal")


def test_agent_action_defaults_to_status():
    assert build_parser().parse_args(["agent"]).action == "status"

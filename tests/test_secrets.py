"""Secrets on the real local agent: each source reaching a function, a %%remote cell and an image build
step; printed values masked in the cell, `nbmodal logs` and a saved notebook; never persisted; bad input;
warm containers kept apart; with_options, App defaults, `with app.run(detach=)` and `nbmodal run --detach`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from waiting import wait_for

import nbmodal
import nbmodal.cli
from nbmodal._runtime.connection import connection
from nbmodal_wire import pb

pytestmark = pytest.mark.agent

NAMED = "named-value-7f3a91"
INLINE = "inline-value-c0ffee"
ENVIRON = "environ-value-5e5e5e"
DOTENV = "dotenv-value-d07e4v"
APP_WIDE = "app-wide-value-a99a"
VALUES = (NAMED, INLINE, ENVIRON, DOTENV, APP_WIDE)

app = nbmodal.App("secrets-tests", secrets=[nbmodal.Secret.from_dict({"APP_TOKEN": APP_WIDE})])


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = nbmodal.cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _leaks(state_dir: Path, values=VALUES) -> list[str]:
    """Files of the agent's state (and the client's home) holding a value, besides the secrets' own files."""
    found = []
    for path in [*state_dir.parent.glob("*.toml"), *state_dir.rglob("*")]:
        relative = path.relative_to(state_dir) if path.is_relative_to(state_dir) else path
        if not path.is_file() or relative.parts[:1] in (("secrets",), ("blobs",)) or \
                relative.parts[:2] == ("images", "layers"):
            continue
        data = path.read_bytes()
        found += [f"{relative}: {value}" for value in values if value.encode() in data]
    return found


@pytest.fixture()
def named_secret(capsys):
    code, out, err = _cli(capsys, "secret", "create", "t-named", f"NAMED_TOKEN={NAMED}", "OTHER=1", "--force")
    assert code == 0, err
    yield "t-named"
    _cli(capsys, "secret", "delete", "t-named")


def test_each_source_reaches_a_function_and_what_it_prints_is_masked(named_secret, nbmodal_home, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("T_ENVIRON_TOKEN", ENVIRON)
    (tmp_path / ".env").write_text(f"DOTENV_TOKEN={DOTENV}\n")
    keys = ("NAMED_TOKEN", "INLINE_TOKEN", "T_ENVIRON_TOKEN", "DOTENV_TOKEN", "APP_TOKEN")

    @app.function(secrets=[nbmodal.Secret.from_name(named_secret, required_keys=["NAMED_TOKEN"]),
                           nbmodal.Secret.from_dict({"INLINE_TOKEN": INLINE}),
                           nbmodal.Secret.from_local_environ(env_keys=["T_ENVIRON_TOKEN"]),
                           nbmodal.Secret.from_dotenv(tmp_path)])
    def show(names):
        import os
        import sys

        for name in names:
            value = os.environ[name]
            print(f"{name}={value[:4]}", end="", flush=True)  # a value split across two writes
            print(f"{value[4:]};", flush=True)
        print(f"stderr {os.environ['NAMED_TOKEN']}", file=sys.stderr, flush=True)
        return [os.environ[name][::-1] for name in names]  # the values, not printed (reversed: not masked)

    call = show.spawn(keys)
    assert [value[::-1] for value in call.get(timeout=120)] == list(VALUES)
    shown = capsys.readouterr()
    code, logs, logs_err = _cli(capsys, "logs", call.object_id)
    assert code == 0 and "stderr ***" in logs + logs_err
    for text in (shown.out + shown.err, logs + logs_err):
        assert all(f"{key}=***;" in text for key in keys), text
        assert not any(value in text for value in VALUES), text
    state_dir = nbmodal_home / "agent"
    run_dir = state_dir / "runs" / call.object_id
    wait_for(lambda: (run_dir / "events.log").exists(), 10, "the run's event log")
    assert not _leaks(state_dir)


def test_errors_and_displays_are_masked(named_secret):
    @app.function(secrets=[nbmodal.Secret.from_name(named_secret)])
    def fail():
        import os

        raise ValueError(f"bad token {os.environ['NAMED_TOKEN']}")

    with pytest.raises(ValueError, match=r"bad token \*\*\*") as raised:
        fail.remote()
    assert NAMED not in str(raised.value) and NAMED not in getattr(raised.value, "remote_traceback", "")


@app.function()
def whoami():
    import os

    return os.environ["NBMODAL_CONTAINER_ID"], os.environ.get("WHICH", "")


def test_containers_with_different_secrets_never_share_a_warm_container():
    first = whoami.with_options(secrets=[nbmodal.Secret.from_dict({"WHICH": "first-value-1"})])
    second = whoami.with_options(secrets=[nbmodal.Secret.from_dict({"WHICH": "second-value-2"})])
    container_a, which_a = first.remote()
    container_b, which_b = second.remote()
    assert (which_a, which_b) == ("first-value-1", "second-value-2")
    assert container_a != container_b
    assert first.remote() == (container_a, "first-value-1")  # the same secrets: its warm container
    assert whoami.remote()[1] == ""  # the original, without the with_options secrets


def test_bad_input_is_refused_with_what_to_do(named_secret, tmp_path, capsys):
    @app.function(secrets=[nbmodal.Secret.from_name("t-unknown")])
    def unknown():
        return 1

    with pytest.raises(nbmodal.exception.NotFoundError, match=r"no secret named 't-unknown'.*t-named"):
        unknown.remote()

    @app.function(secrets=[nbmodal.Secret.from_name(named_secret, required_keys=["NAMED_TOKEN", "MISSING_KEY"])])
    def missing():
        return 1

    with pytest.raises(nbmodal.exception.NotFoundError, match="missing the required key.* MISSING_KEY"):
        missing.remote()

    code, _, err = _cli(capsys, "secret", "create", named_secret, "NAMED_TOKEN=other-value")
    assert code == 1 and "already exists" in err and "--force" in err
    code, _, err = _cli(capsys, "secret", "create", "t-bad", "NOT-VALID=1")
    assert code == 1 and "'NOT-VALID' is not a valid environment variable name" in err
    (tmp_path / "bad.env").write_text("A=1\nB=2\nnonsense here\n")
    code, _, err = _cli(capsys, "secret", "create", "t-bad", "--from-dotenv", str(tmp_path / "bad.env"))
    assert code == 1 and "bad.env, line 3" in err
    code, _, err = _cli(capsys, "secret", "delete", "t-unknown")
    assert code == 1 and "no secret named 't-unknown'" in err and "t-named" in err
    code, out, _ = _cli(capsys, "secret", "list")
    assert code == 0 and "t-named" in out and "NAMED_TOKEN, OTHER" in out and NAMED not in out
    assert "t-bad" not in out


def test_a_build_step_secret_is_in_its_environment_not_the_image(nbmodal_home):
    secret = nbmodal.Secret.from_dict({"BUILD_TOKEN": INLINE})
    write = ("python -c \"import hashlib, os, sysconfig; open(sysconfig.get_paths()['purelib'] + "
             "'/derived_secret.py', 'w').write('DIGEST = %r' % hashlib.sha256(os.environ['BUILD_TOKEN']"
             ".encode()).hexdigest())\"")
    image = nbmodal.Image.debian_slim().run_commands("echo building with $BUILD_TOKEN", write, secrets=[secret])
    assert INLINE not in repr(image)

    @app.function(image=image)
    def digest():
        import os

        import derived_secret

        return derived_secret.DIGEST, "BUILD_TOKEN" in os.environ

    import hashlib

    assert digest.remote() == (hashlib.sha256(INLINE.encode()).hexdigest(), False)
    logs = "".join(path.read_text() for path in (nbmodal_home / "agent" / "images" / "logs").glob("*.log"))
    assert "building with ***" in logs and INLINE not in logs
    assert not _leaks(nbmodal_home / "agent", (INLINE,))


def test_a_cell_secret_is_masked_in_the_saved_notebook(named_secret, nbmodal_home, tmp_path, capsys):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext nbmodal\n%nbmodal secret list"),
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            %%remote secrets=t-named
            import os
            value = os.environ["NAMED_TOKEN"]
            print("cell sees", value[:3], end="", flush=True)
            print(value[3:], flush=True)
            print(len(value))""")),
        nbformat.v4.new_code_cell("%%remote secrets=t-named\nraise RuntimeError('leaked ' + os.environ['NAMED_TOKEN'])",
                                  metadata={"tags": ["raises-exception"]}),
    ]
    path = tmp_path / "secret_cell.ipynb"
    nbformat.write(notebook, path)
    code, out, err = _cli(capsys, "run", str(path))
    saved = (tmp_path / "secret_cell.executed.ipynb").read_text()
    assert "cell sees ***" in saved and "RuntimeError" in saved and "leaked ***" in saved, saved
    assert NAMED not in saved and NAMED not in out + err
    assert f"{len(NAMED)}" in saved  # the cell had the value
    assert "it holds a secret's value" in saved  # `value` was not brought back into the notebook
    assert "NAMED_TOKEN, OTHER" in saved  # %nbmodal secret list: names and keys
    assert not _leaks(nbmodal_home / "agent")


@app.function(timeout=120)
def wait_for_file(path):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.05)
    return "done"


def _state(call) -> int:
    return connection("local").client().get_run(call.object_id).state


def test_app_run_detach_keeps_spawned_runs_and_a_plain_block_stops_them(tmp_path):
    go = tmp_path / "go"
    with app.run(detach=True):
        kept = wait_for_file.spawn(str(go))
    with app.run():
        stopped = wait_for_file.spawn(str(go))
    wait_for(lambda: _state(stopped) == pb.CANCELLED, 30, "the plain block's spawned run to be cancelled")
    assert _state(kept) in (pb.PENDING, pb.RUNNING)
    assert connection("local").client().get_run(kept.object_id).detach
    go.write_text("")
    assert kept.get(timeout=60) == "done"


def test_nbmodal_run_detach_leaves_spawned_runs_going(tmp_path, capsys):
    go = tmp_path / "go"
    script = tmp_path / "spawner.py"
    script.write_text(textwrap.dedent(f"""\
        import os, time
        import nbmodal as modal

        app = modal.App("spawner")

        @app.function()
        def wait():
            while not os.path.exists({str(go)!r}):
                time.sleep(0.05)

        @app.local_entrypoint()
        def main(tag: str = "x"):
            print("spawned", wait.spawn().object_id, tag)
        """))
    ids = []
    for detach in (["--detach"], []):
        code, out, err = _cli(capsys, "run", str(script), *detach, "--tag", "t")
        assert code == 0, err
        ids.append(out.split()[1])
    client = connection("local").client()
    wait_for(lambda: client.get_run(ids[1]).state == pb.CANCELLED, 30, "the run of a plain `nbmodal run` to stop")
    assert client.get_run(ids[0]).state in (pb.PENDING, pb.RUNNING)
    go.write_text("")
    wait_for(lambda: client.get_run(ids[0]).state == pb.SUCCEEDED, 60, "the detached run to finish")

"""Secrets in process: the Secret API, .env parsing, the agent's store and its file modes, masking,
layer keys without values, App defaults and with_options (no agent)."""

from __future__ import annotations

import asyncio
import stat

import pytest

import nbmodal
from nbmodal._cli.secrets import parse_pairs
from nbmodal._dotenv import DotenvError, parse_dotenv
from nbmodal.exceptions import InvalidError
from nbmodal_wire import pb
from remote_agent.images import layer_keys
from remote_agent.redaction import Redactor, StreamRedactor
from remote_agent.secrets import SecretEnvironments, SecretError, SecretStore

pytestmark = pytest.mark.unit

TOKEN = "hf_0123456789abcdef"


# -- the Secret API ---------------------------------------------------------------------------


def test_each_source_and_repr_never_shows_values(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_TEST_TOKEN", TOKEN)
    (tmp_path / "sub").mkdir()
    (tmp_path / ".env").write_text(f"# settings\nexport FROM_FILE={TOKEN}\nQUOTED=\"a b\\n\" # note\nBARE\n")
    secrets = [
        nbmodal.Secret.from_dict({"A": TOKEN, "DROPPED": None}),
        nbmodal.Secret.from_local_environ(env_keys=["NBMODAL_TEST_TOKEN"]),
        nbmodal.Secret.from_dotenv(tmp_path / "sub"),              # found in the directory above
        nbmodal.Secret.from_name("hf", required_keys=["HF_TOKEN"]),
    ]
    assert [dict(s.to_proto().values) for s in secrets[:3]] == [
        {"A": TOKEN}, {"NBMODAL_TEST_TOKEN": TOKEN}, {"FROM_FILE": TOKEN, "QUOTED": "a b\n"}]
    assert secrets[3].to_proto() == pb.SecretSource(name="hf", required_keys=["HF_TOKEN"])
    for secret in secrets:
        assert TOKEN not in repr(secret)
    assert repr(secrets[0]) == "<nbmodal.Secret.from_dict keys=['A']>"
    assert secrets[3].name == "hf" and secrets[0].name is None
    monkeypatch.chdir(tmp_path / "sub")
    assert dict(nbmodal.Secret.from_dotenv().to_proto().values)["FROM_FILE"] == TOKEN
    assert asyncio.run(secrets[3].hydrate.aio()) is secrets[3]


def test_bad_input_is_refused_naming_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.delenv("NBMODAL_NOT_SET", raising=False)
    with pytest.raises(InvalidError, match="NBMODAL_NOT_SET is not set"):
        nbmodal.Secret.from_local_environ(env_keys=["NBMODAL_NOT_SET"])
    with pytest.raises(InvalidError, match="'1BAD' is not a valid environment variable name"):
        nbmodal.Secret.from_dict({"1BAD": "x"})
    with pytest.raises(InvalidError, match="secret name 'no spaces' is not allowed"):
        nbmodal.Secret.from_name("no spaces")
    (tmp_path / ".env").write_text("GOOD=1\n\nthis line is wrong\n")
    with pytest.raises(DotenvError, match=r"\.env, line 3: can't read 'this line is wrong'"):
        nbmodal.Secret.from_dotenv(tmp_path)
    with pytest.raises(DotenvError, match="line 2: the \" quote of B is never closed"):
        parse_dotenv('A=1\nB="open\nC=2\n')
    with pytest.raises(DotenvError, match="line 1: can't read '9X=1'"):
        parse_dotenv("9X=1")
    with pytest.raises(InvalidError, match="secrets= takes nbmodal.Secret objects"):
        nbmodal.App("bad-secrets").function(secrets=["hf"])(lambda: 1)
    with pytest.raises(InvalidError, match="expected KEY=VALUE, got 'HF_TOKEN'"):
        parse_pairs(["HF_TOKEN"])
    assert parse_pairs(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}


def test_dotenv_reads_as_python_dotenv_does():
    text = "A=plain # comment\nB='single #kept'\nC=\"multi\nline\"\nexport D = spaced \nE=\n"
    assert parse_dotenv(text) == {"A": "plain", "B": "single #kept", "C": "multi\nline", "D": "spaced", "E": ""}


# -- App defaults, with_options -------------------------------------------------------------------


def test_app_secrets_are_defaults_and_with_options_replaces_options():
    shared = nbmodal.Secret.from_dict({"SHARED": "x"})
    own = nbmodal.Secret.from_name("hf")
    app = nbmodal.App("secret-defaults", secrets=[shared])

    @app.function(gpu="any", timeout=60, secrets=[own])
    def f():
        return 1

    @app.function()
    def g():
        return 2

    @app.cls(secrets=[own])
    class Model:
        @nbmodal.method()
        def predict(self):
            return 3

    assert f.secrets == [shared, own] and g.secrets == [shared]
    assert [s.name for s in Model.options["secrets"]] == [None, "hf"]
    assert [s.name for s in f.run_options().secrets] == ["", "hf"]
    assert "SHARED" not in repr(f.run_options())  # options never show secret values
    other = nbmodal.Secret.from_dict({"OTHER": "y"})
    big = f.with_options(gpu="H100", timeout=5, secrets=[other], max_containers=3)
    assert big is not f and big.gpu == "H100" and big.timeout == 5 and big.secrets == [other]
    assert big.max_containers == 3 and big.raw_f is f.raw_f and big.app is app
    assert f.gpu == "any" and f.timeout == 60 and f.secrets == [shared, own]  # the original is unchanged
    assert f.with_options().secrets == f.secrets
    assert [s.name for s in Model.with_options(secrets=[other]).options["secrets"]] == [None]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        f.with_options(colour="red")


def test_image_step_secrets_are_in_the_step_not_its_repr_or_layer_key():
    def image(value: str) -> nbmodal.Image:
        secret = nbmodal.Secret.from_dict({"BUILD_TOKEN": value})
        return nbmodal.Image.debian_slim().run_commands("echo $BUILD_TOKEN", secrets=[secret])

    one, two = image(TOKEN), image("another-value-42")
    assert TOKEN not in repr(one) and "BUILD_TOKEN" in repr(one)
    assert one.steps[-1].secrets[0].values["BUILD_TOKEN"] == TOKEN  # travels to the build
    assert layer_keys(one.to_spec()) == layer_keys(two.to_spec())  # values don't make the layer
    renamed = nbmodal.Image.debian_slim().run_commands(
        "echo $BUILD_TOKEN", secrets=[nbmodal.Secret.from_dict({"OTHER_KEY": TOKEN})])
    assert layer_keys(renamed.to_spec())[-1] != layer_keys(one.to_spec())[-1]  # keys do
    uv = nbmodal.Image.debian_slim().uv_pip_install("numpy", secrets=[nbmodal.Secret.from_name("pypi")])
    assert uv.steps[-1].kind == "pip" and uv.steps[-1].secrets[0].name == "pypi"


# -- the agent's store ----------------------------------------------------------------------------------


def test_store_files_are_owner_only_and_listing_has_no_values(tmp_path):
    store = SecretStore(tmp_path / "secrets")
    store.create("hf", {"HF_TOKEN": TOKEN})
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets" / "hf.json").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["hf.json"]  # no temporary left behind
    [info] = store.list()
    assert info.name == "hf" and list(info.keys) == ["HF_TOKEN"] and info.created > 0
    assert TOKEN not in str(info)
    with pytest.raises(SecretError, match="already exists on this host; use --force"):
        store.create("hf", {"HF_TOKEN": "x"})
    assert store.create("hf", {"HF_TOKEN": "replaced-value"}, force=True)[1] is True
    assert store.get("hf") == {"HF_TOKEN": "replaced-value"}
    with pytest.raises(SecretError, match="not a valid environment variable name"):
        store.create("bad", {"A-B": "x"})
    with pytest.raises(SecretError, match=r"no secret named 'wandb' on this host \(secrets here: hf\)"):
        store.environment([pb.SecretSource(name="wandb")])
    with pytest.raises(SecretError, match=r"'hf' is missing the required key\(s\) WANDB_KEY \(it has: HF_TOKEN\)"):
        store.environment([pb.SecretSource(name="hf", required_keys=["WANDB_KEY"])])
    store.delete("hf")
    with pytest.raises(SecretError, match="there are no secrets here"):
        store.delete("hf")


def test_environments_merge_in_order_and_specs_differ_by_digest(tmp_path):
    store = SecretStore(tmp_path / "secrets")
    store.create("hf", {"HF_TOKEN": TOKEN, "SHARED": "from-named"})
    environments = SecretEnvironments(store)
    request = pb.RunRequest(secrets=[pb.SecretSource(name="hf"), pb.SecretSource(values={"SHARED": "inline"})])
    request.spec.secrets_digest = "forged-by-a-client"
    environments.apply(request)
    assert not request.secrets  # the values are no longer held by the request
    assert environments.for_spec(request.spec) == {"HF_TOKEN": TOKEN, "SHARED": "inline"}
    assert TOKEN not in request.spec.secrets_digest and len(request.spec.secrets_digest) == 32
    other = pb.RunRequest(secrets=[pb.SecretSource(values={"HF_TOKEN": "different"})])
    environments.apply(other)
    assert other.spec.secrets_digest != request.spec.secrets_digest
    plain = pb.RunRequest()
    plain.spec.secrets_digest = request.spec.secrets_digest  # a forged digest reaches no one's secrets
    environments.apply(plain)
    assert plain.spec.secrets_digest == "" and environments.for_spec(plain.spec) == {}


# -- masking ----------------------------------------------------------------------------------------------


def test_a_value_split_across_chunks_is_masked_and_short_values_are_not():
    redactor = Redactor([TOKEN, "short"])
    stream = StreamRedactor(redactor)
    shown = b"".join([stream.feed(b"token: hf_0123"), stream.feed(b"456789abcdef and hf_"),
                      stream.feed(b"012 no"), stream.flush()])
    assert shown == b"token: *** and hf_012 no"
    assert redactor.text("a short word") == "a short word"  # under 6 characters: not masked
    finished = pb.RunFinished(error=pb.ErrorInfo(message=f"bad {TOKEN}", traceback=f"ValueError: bad {TOKEN}\n",
                                                 exception=b"pickled " + TOKEN.encode()))
    redactor.finished(finished)
    assert finished.error.message == "bad ***" and TOKEN not in finished.error.traceback
    assert finished.error.exception == b""  # a pickle holding the value is dropped, not shown
    assigned = pb.RunFinished(values={"token": b"pickled " + TOKEN.encode(), "n": b"pickled 3"})
    redactor.finished(assigned)
    assert list(assigned.values) == ["n"] and assigned.left_out[0].name == "token"  # not brought back
    display = redactor.display(pb.Display(data_json='{"text/plain": "' + TOKEN + '", "text/html": "<b>'
                                          + TOKEN + '</b>"}'))
    assert TOKEN not in display.data_json and "***" in display.data_json

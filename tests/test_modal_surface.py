"""Modal's public surface under nbmodal: every name of the reference, the exception hierarchy, every keyword
of the decorators accepted (cloud-only ones with one warning), deprecated GPU objects, classes checked at
decoration, inherited, with_options/with_concurrency/with_batching, and the container context."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import pytest

import nbmodal
import nbmodal as modal
from nbmodal import _function_options
from nbmodal._function_options import FUNCTION_OPTIONS, Status
from nbmodal.app import Function
from nbmodal.exceptions import NoEffectWarning
from nbmodal_wire import pb

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parent.parent / "README.md"

# The public names of the seed's API reference (modal-docs.txt, "007_REFERENCE").
REFERENCE_NAMES = [
    "App", "Client", "CloudBucketMount", "Cls", "Cron", "Dict", "Error", "FilePatternMatcher", "Function",
    "FunctionCall", "Image", "NetworkFileSystem", "Period", "Proxy", "Queue", "Retries", "Sandbox",
    "SandboxSnapshot", "Secret", "Tunnel", "Volume", "asgi_app", "batched", "call_graph", "concurrent",
    "container_process", "current_function_call_id", "current_input_id", "enable_output", "enter", "exit",
    "fastapi_endpoint", "file_io", "forward", "gpu", "interact", "io_streams", "is_local", "method", "parameter",
    "web_endpoint", "web_server", "wsgi_app", "exception", "config",
]

# modal.exception's names, with their base as Modal declares it.
MODAL_EXCEPTIONS = {
    "AlreadyExistsError": "Error", "AuthError": "Error", "ClientClosed": "Error", "ConnectionError": "Error",
    "DeserializationError": "Error", "ExecutionError": "Error", "FilesystemExecutionError": "Error",
    "FunctionTimeoutError": "TimeoutError", "InteractiveTimeoutError": "TimeoutError", "InternalFailure": "Error",
    "InvalidError": "Error", "MountUploadTimeoutError": "TimeoutError", "NotFoundError": "Error",
    "OutputExpiredError": "TimeoutError", "RemoteError": "Error", "RequestSizeError": "Error",
    "SandboxTerminatedError": "Error", "SandboxTimeoutError": "TimeoutError", "SerializationError": "Error",
    "TimeoutError": "Error", "VersionError": "Error", "VolumeUploadTimeoutError": "TimeoutError",
}

IMAGE_METHODS = [
    "hydrate", "add_local_file", "add_local_dir", "add_local_python_source", "from_id", "pip_install",
    "pip_install_private_repos", "pip_install_from_requirements", "pip_install_from_pyproject",
    "poetry_install_from_file", "dockerfile_commands", "entrypoint", "shell", "run_commands", "micromamba",
    "micromamba_install", "from_registry", "from_gcp_artifact_registry", "from_aws_ecr", "from_dockerfile",
    "debian_slim", "apt_install", "run_function", "env", "workdir", "cmd", "imports",
]


@pytest.fixture()
def fresh_warnings(monkeypatch):
    """Each test sees every keyword's first warning (they warn once per process)."""
    monkeypatch.setattr(_function_options, "_warned", set())


def _app() -> nbmodal.App:
    return nbmodal.App("surface")


def test_every_name_of_the_reference_exists():
    missing = [name for name in REFERENCE_NAMES if not hasattr(modal, name)]
    assert not missing
    for name in ("App", "Function", "FunctionCall", "Cls", "Image", "Volume", "Dict", "Queue"):
        assert name in nbmodal.__all__
    assert [m for m in IMAGE_METHODS if not hasattr(modal.Image, m)] == []
    for name in ("update_autoscaler", "get_current_stats", "keep_warm", "get_raw_f", "from_name", "hydrate",
                 "remote", "remote_gen", "local", "spawn", "map", "starmap", "for_each", "spawn_map"):
        assert hasattr(Function, name), name
    for name in ("with_options", "with_concurrency", "with_batching", "from_name", "hydrate"):
        assert hasattr(modal.Cls, name), name
    for name in ("lookup", "deploy", "include", "registered_functions", "registered_classes",
                 "registered_web_endpoints", "is_interactive", "app_id", "description", "set_description"):
        assert hasattr(_app(), name), name
    assert callable(modal.experimental.stop_fetching_inputs) and callable(modal.exception.simulate_preemption)


def test_the_exceptions_are_modals_and_nbmodals_errors_are_among_them():
    exc = modal.exception
    for name, base in MODAL_EXCEPTIONS.items():
        assert issubclass(getattr(exc, name), getattr(exc, base)), name
        assert issubclass(getattr(exc, name), modal.Error)
    assert modal.Error is exc.Error
    assert issubclass(exc.InputCancellation, BaseException) and not issubclass(exc.InputCancellation, Exception)
    assert issubclass(exc.DeprecationError, UserWarning) and issubclass(exc.DeprecationError, DeprecationWarning)
    assert issubclass(exc.ServerWarning, UserWarning) and issubclass(exc.PendingDeprecationError, UserWarning)
    # nbmodal's own errors are Modal's types, keep their names, and are still caught as before.
    assert nbmodal.NotFoundError is exc.NotFoundError and nbmodal.RemoteError is exc.RemoteError
    assert issubclass(nbmodal.GpuUnavailableError, exc.InvalidError)
    assert issubclass(nbmodal.AgentError, exc.ConnectionError)
    assert issubclass(nbmodal.AgentLostError, ConnectionError)  # the built-in one, as before
    assert issubclass(nbmodal.RunLostError, exc.ExecutionError)
    assert issubclass(nbmodal.CaptureError, exc.SerializationError)
    assert issubclass(nbmodal.ImageDefinitionError, exc.InvalidError) and issubclass(nbmodal.ImageDefinitionError,
                                                                                      ValueError)
    assert issubclass(nbmodal.VersionMismatchError, exc.VersionError)
    assert issubclass(exc.FunctionTimeoutError, TimeoutError)  # `except TimeoutError` catches Modal's timeouts
    remote = nbmodal.RemoteError("ZeroDivisionError", "division by zero", "Traceback ...")
    assert str(remote) == "ZeroDivisionError: division by zero" and remote.remote_traceback == "Traceback ..."
    assert str(nbmodal.NotFoundError("no dict 'x'")) == "no dict 'x'"


@pytest.mark.parametrize("option", [o for o in FUNCTION_OPTIONS if o.status is Status.NO_EFFECT],
                         ids=lambda o: o.name)
def test_each_cloud_only_keyword_is_accepted_with_one_warning(option, fresh_warnings):
    value = {"region": "us-east", "cloud": "aws", "ephemeral_disk": 1024, "max_inputs": 1,
             "experimental_options": {"x": 1}}.get(option.name, True)
    app = _app()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @app.function(**{option.name: value})
        def first():
            return 1

        @app.function(**{option.name: value})
        def second():
            return 2

    said = [w for w in caught if issubclass(w.category, NoEffectWarning)]
    assert len(said) == 1 and option.name in str(said[0].message) and "no effect" in str(said[0].message)
    assert said[0].filename == __file__  # it points at the decorator in the user's code
    assert first.remote is not None and second.local() == 2


def test_modal_defaults_of_cloud_keywords_say_nothing(fresh_warnings):
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @_app().function(region=None, cloud=None, serialized=False, block_network=False, secrets=[], schedule=None,
                         network_file_systems={}, include_source=True, is_generator=False, max_containers=None)
        def f():
            return 1

    assert f.local() == 1


def test_every_keyword_of_the_table_is_accepted_and_honoured_ones_reach_function():
    function_parameters = inspect.signature(Function.__init__).parameters
    for option in FUNCTION_OPTIONS:
        if option.status is Status.HONOURED:
            assert option.name in function_parameters, f"{option.name} is honoured but Function doesn't take it"
    # Modal's documented keywords of App.function / App.cls, all in the table.
    for name in ("image", "schedule", "secrets", "gpu", "serialized", "network_file_systems", "volumes", "cpu",
                 "memory", "ephemeral_disk", "min_containers", "max_containers", "buffer_containers",
                 "scaledown_window", "proxy", "retries", "timeout", "name", "is_generator", "cloud", "region",
                 "enable_memory_snapshot", "block_network", "restrict_modal_access", "max_inputs", "i6pn",
                 "include_source", "experimental_options", "_experimental_scheduler_placement",
                 "_experimental_proxy_ip", "_experimental_custom_scaling_factor", "_experimental_enable_gpu_snapshot",
                 "keep_warm", "concurrency_limit", "container_idle_timeout", "allow_concurrent_inputs",
                 "_experimental_buffer_containers", "allow_cross_region_volumes"):
        assert name in _function_options.option_names(), name


def test_an_unknown_keyword_is_a_type_error_that_lists_the_valid_ones():
    with pytest.raises(TypeError, match="unexpected keyword argument 'gpus'.*gpu"):
        _app().function(gpus="H100")
    with pytest.raises(TypeError, match="unexpected keyword argument 'schedule'"):
        _app().cls(schedule=None)  # classes have no schedule in Modal either


def test_renamed_keywords_are_honoured_under_their_new_names(fresh_warnings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @_app().function(keep_warm=2, concurrency_limit=3, container_idle_timeout=60, allow_concurrent_inputs=5)
        def f():
            return 1

    said = " ".join(str(w.message) for w in caught if issubclass(w.category, modal.exception.DeprecationError))
    for old, new in (("keep_warm", "min_containers"), ("concurrency_limit", "max_containers"),
                     ("container_idle_timeout", "scaledown_window"), ("allow_concurrent_inputs", "concurrent")):
        assert re.search(rf"{old}=\.\.\.\) is deprecated, as in Modal: use \S*{new}", said), old

    assert f.spec.min_containers == 2 and f.max_containers == 3 and f.spec.scaledown_window_s == 60
    assert f.max_inputs == 5


def test_unavailable_features_raise_a_clear_error_at_decoration():
    with pytest.raises(modal.exception.InvalidError, match="schedule='every day'.*use nbmodal.Period"):
        _app().function(schedule="every day")(lambda: None)
    with pytest.raises(modal.exception.InvalidError, match="SandboxSnapshot"):
        modal.SandboxSnapshot.from_id("sn-1")
    assert modal.interact() is None  # stdin already reaches the notebook; outside a container: nothing to do
    with pytest.raises(modal.exception.InvalidError, match="stop_fetching_inputs"):
        modal.experimental.stop_fetching_inputs()
    assert isinstance(modal.Secret, type) and modal.Secret.__name__ == "Secret"  # a type hint still works


def test_deprecated_gpu_objects_become_the_string_form_with_a_warning():
    with pytest.warns(DeprecationWarning, match="gpu='H100'"):
        h100 = modal.gpu.H100()
    assert str(h100) == "H100"
    with pytest.warns(DeprecationWarning, match="A100-80GB:2"):
        a100 = modal.gpu.A100(size="80GB", count=2)
    with pytest.warns(DeprecationWarning):
        fallback = [modal.gpu.Any(), "T4"]
    app = _app()

    @app.function(gpu=h100)
    def one():
        return 1

    @app.function(gpu=a100)
    def two():
        return 2

    @app.function(gpu=fallback)
    def three():
        return 3

    assert (one.gpu, two.gpu, three.gpu) == ("H100", "A100-80GB:2", "any,T4")
    with pytest.raises(modal.exception.InvalidError, match="size"):
        modal.gpu.A100(size="20GB")


def test_cls_options_are_checked_at_decoration():
    app = _app()

    class Model:
        @modal.method()
        def predict(self, x):
            return x

    with pytest.raises(modal.exception.InvalidError, match="unknown GPU type 'NOPE'") as refused:
        app.cls(gpu="NOPE")(Model)
    assert isinstance(refused.value, ValueError)  # as it always was
    with pytest.raises(TypeError, match="unexpected keyword argument 'gpus'"):
        app.cls(gpus="H100")
    with pytest.raises(ValueError, match="limit"):
        app.cls(cpu=(4, 1))(Model)
    assert "Model" not in app.registered_classes


def test_methods_hooks_and_parameters_are_inherited():
    app = _app()

    class Base:
        size: int = modal.parameter(default=3)
        label: str = modal.parameter(default="base", init=False)

        @modal.enter()
        def load(self):
            self.weights = self.size * 10

        @modal.method()
        def predict(self, x):
            return self.weights + x

    @app.cls(gpu="any")
    class Child(Base):
        @modal.method
        def describe(self):
            return f"{self.label}:{self.size}"

    assert sorted(Child.methods) == ["describe", "predict"] and Child.parameters == {"size": 3}
    instance = Child(size=5)
    assert instance.predict.local(1) == 51 and instance.describe.local() == "base:5"
    assert instance.predict.gpu == "any" and instance.predict.name == "Child.predict"
    with pytest.raises(TypeError, match="has no parameter label"):
        Child(label="x")
    assert app.registered_classes["Child"] is Child

    @app.cls(timeout=5)
    class GrandChild(Child):  # a subclass of a decorated class: of its own class, with its methods
        @modal.method()
        def double(self, x):
            return 2 * self.predict(x)

    assert sorted(GrandChild.methods) == ["describe", "double", "predict"]
    assert GrandChild(size=1).double.local(1) == 22 and GrandChild().predict.timeout == 5.0


def test_with_options_returns_a_cls_whose_instances_use_the_new_options(fresh_warnings):
    app = _app()

    @app.cls(gpu="T4", timeout=30, max_containers=2)
    class Model:
        @modal.method()
        def predict(self, x):
            return x

    bigger = Model.with_options(gpu="H100", timeout=600, memory=(1024, 2048))
    assert isinstance(bigger, modal.Cls) and bigger is not Model
    function = bigger().predict
    assert (function.gpu, function.timeout, function.max_containers) == ("H100", 600.0, 2)
    assert (function.spec.memory_mib, function.spec.memory_limit_mib) == (1024, 2048)
    assert Model().predict.gpu == "T4" and Model().predict.timeout == 30.0  # the original is unchanged
    with pytest.warns(NoEffectWarning, match="region"):
        Model.with_options(region="eu")
    with pytest.raises(modal.exception.InvalidError, match="unknown GPU type"):
        Model.with_options(gpu="NOPE")


def test_concurrency_on_classes_and_with_concurrency_and_with_batching():
    app = _app()

    @app.cls()
    @modal.concurrent(max_inputs=4)
    class Fetcher:
        @modal.method()
        def fetch(self, url):
            return url

        @modal.method()
        def add(self, xs, ys):
            return [x + y for x, y in zip(xs, ys)]

    assert Fetcher().fetch.max_inputs == 4
    assert Fetcher.with_concurrency(max_inputs=16)().fetch.max_inputs == 16
    with pytest.raises(ValueError, match="max_inputs"):
        Fetcher.with_concurrency(max_inputs=0)
    from nbmodal._runtime.batching import batched_size

    batching = Fetcher.with_batching(max_batch_size=8, wait_ms=50)
    assert batched_size(batching().add.raw_f) == 8 and batched_size(Fetcher().add.raw_f) == 0
    with pytest.raises(ValueError, match="max_batch_size"):
        Fetcher.with_batching(max_batch_size=0, wait_ms=10)


def test_app_defaults_and_app_methods(fresh_warnings):
    image = modal.Image.debian_slim()
    app = modal.App("defaults", image=image, volumes={"/data": "data"})

    @app.function(volumes={"/ckpt": "ckpt"})
    def f():
        return 1

    assert f.image is image
    assert {(m.path, m.volume) for m in f.spec.volumes} == {("/data", "data"), ("/ckpt", "ckpt")}
    other = modal.App("other")

    @other.function(name="g")
    def g():
        return 2

    assert app.include(other) is app and app.registered_functions["g"] is g
    assert app.app_id is None and app.is_interactive is False and app.description == "defaults"
    with app.run(detach=True, interactive=False):
        pass
    with pytest.raises(modal.exception.NotFoundError, match="no app 'nope' is deployed"):
        modal.App.lookup("nope")  # app.deploy() itself: tests/test_deploy.py
    assert modal.App.lookup("made", create_if_missing=True).name == "made"
    assert modal.App.lookup("defaults") is app  # an App is found where it is defined: in this process
    assert modal.Function.from_name("defaults", "g") is g
    with pytest.raises(modal.exception.NotFoundError, match="no function 'h'.*g"):
        modal.Function.from_name("defaults", "h")

    @app.cls()
    class Model:
        @modal.method()
        def predict(self, x):
            return x

    assert modal.Cls.from_name("defaults", "Model") is Model
    with pytest.raises(modal.exception.NotFoundError, match="no app 'elsewhere'"):
        modal.Cls.from_name("elsewhere", "Model")
    with pytest.raises(modal.exception.InvalidError, match="secrets"):
        modal.App("s", secrets=[object()])


def test_autoscaler_keep_warm_and_raw_function(fresh_warnings):
    def train(lr):
        return lr * 2

    f = _app().function(min_containers=1, max_containers=4)(train)
    assert f.get_raw_f() is train
    f.update_autoscaler(max_containers=8, scaledown_window=30)
    assert (f.spec.min_containers, f.max_containers, f.spec.scaledown_window_s) == (1, 8, 30)
    with pytest.warns(modal.exception.DeprecationError, match="update_autoscaler"):
        f.keep_warm(3)
    assert f.spec.min_containers == 3 and f.max_containers == 8


def test_current_stats_count_the_functions_queue_and_containers(monkeypatch):
    @_app().function(gpu="any", name="work")
    def work(x):
        return x

    other_spec = pb.ContainerSpec(gpu="T4")

    class Client:
        def list_runs(self):
            return [pb.RunInfo(run_id="r-1", label="work()", state=pb.PENDING),
                    pb.RunInfo(run_id="r-2", label="work() × 8", state=pb.PENDING),
                    pb.RunInfo(run_id="r-3", label="work()", state=pb.RUNNING),
                    pb.RunInfo(run_id="r-4", label="work()", state=pb.SUCCEEDED),
                    pb.RunInfo(run_id="r-5", label="workers()", state=pb.PENDING)]

        def list_containers(self):
            return [pb.ContainerInfo(container_id="c-1", run_id="r-3", state=pb.CONTAINER_BUSY, spec=other_spec),
                    pb.ContainerInfo(container_id="c-2", state=pb.CONTAINER_IDLE, spec=work.spec),
                    pb.ContainerInfo(container_id="c-3", state=pb.CONTAINER_EXITED, spec=work.spec),
                    pb.ContainerInfo(container_id="c-4", state=pb.CONTAINER_IDLE, spec=other_spec)]

    class Target:
        client = Client()
        spec = work.spec

    monkeypatch.setattr(Function, "resolve", lambda self: Target())
    stats = work.get_current_stats()
    assert (stats.backlog, stats.num_total_runners) == (2, 2)


def test_container_context_ids(monkeypatch):
    from remote_agent.worker import context

    monkeypatch.delenv("NBMODAL_CONTAINER_TOKEN", raising=False)
    monkeypatch.setattr(context, "_run_id", "")
    assert modal.is_local() and modal.current_function_call_id() is None and modal.current_input_id() is None
    context.begin_run("r-1a2b3c4d")
    assert not modal.is_local() and modal.current_function_call_id() == "r-1a2b3c4d"
    assert modal.current_input_id() == "in-r-1a2b3c4d-0"
    context.begin_input(7)
    assert modal.current_input_id() == "in-r-1a2b3c4d-7"
    with pytest.raises(modal.exception.InvalidError):  # not in a container any more: would stop the kernel
        monkeypatch.setattr(context, "_run_id", "")
        modal.exception.simulate_preemption(1)


def test_enable_output_is_a_context_manager():
    with modal.enable_output(show_progress=False) as value:
        assert value is None


def test_image_keywords_are_accepted(fresh_warnings, tmp_path):
    base = modal.Image.debian_slim(python_version="3.11", force_build=True)
    assert base.force_build
    with pytest.warns(NoEffectWarning, match="gpu"):
        image = base.pip_install("numpy", gpu="any", secrets=[]).run_commands("true", gpu="T4")
    assert [step.kind for step in image.steps][-2:] == ["pip", "run"]
    with pytest.raises(modal.exception.InvalidError, match="secrets"):
        base.apt_install("git", secrets=[object()])
    with pytest.warns(NoEffectWarning, match="entrypoint"):
        assert base.entrypoint(["/bin/sh"]).steps == base.steps
    with pytest.raises(modal.exception.InvalidError, match="from_registry"):
        modal.Image.from_registry("nvidia/cuda:12.4.0-devel-ubuntu22.04", add_python="3.11")
    (tmp_path / "a.txt").write_text("a")
    with pytest.warns(modal.exception.DeprecationError):
        copied = base.copy_local_file(tmp_path / "a.txt", "/root/a.txt")
    assert copied.steps[-1].kind != "python"


def test_file_pattern_matcher(tmp_path):
    matcher = modal.FilePatternMatcher("**/*.pyc", "build", "!build/keep.txt")
    assert matcher(Path("a/b/c.pyc")) and matcher(Path("build/x.o")) and not matcher(Path("build/keep.txt"))
    assert not matcher(Path("src/main.py"))
    only_csv = ~modal.FilePatternMatcher("**/*.csv")
    assert not only_csv(Path("data/2024/x.csv")) and only_csv(Path("data/readme.md"))
    (tmp_path / "data" / "2024").mkdir(parents=True)
    (tmp_path / "data" / "2024" / "x.csv").write_text("1,2")
    (tmp_path / "data" / "readme.md").write_text("hi")
    image = modal.Image.debian_slim().add_local_dir(tmp_path / "data", "/data", ignore=only_csv)
    assert sorted(image.local_files().values()) == [tmp_path / "data" / "2024" / "x.csv"]
    ignore_file = tmp_path / ".dockerignore"
    ignore_file.write_text("# comment\n*.md\n")
    assert modal.FilePatternMatcher.from_file(ignore_file)(Path("readme.md"))


def test_the_readme_table_lists_every_keyword_and_reference_name():
    text = README.read_text()
    section = text[text.index("## Modal compatibility"):text.index("## The command line")]
    assert _function_options.markdown_table() in section, "regenerate the README's keyword table"
    for name in REFERENCE_NAMES:
        assert re.search(rf"`(modal|nbmodal)\.{re.escape(name)}`", section), name


def test_concurrent_accepts_modals_target_inputs():
    import nbmodal as modal

    @modal.concurrent(max_inputs=8, target_inputs=4)
    def fetch(url):
        return url

    assert fetch._nbmodal_max_inputs == 8
    with pytest.raises(ValueError, match="target_inputs=9 must be between 1 and max_inputs=8"):
        modal.concurrent(max_inputs=8, target_inputs=9)


def test_from_name_finds_functions_and_classes_of_an_app_defined_here():
    import nbmodal as modal

    app = modal.App("surface-from-name")

    @app.function(name="square")  # defined inside this test, its default name is the qualified one
    def square(x):
        return x * x

    @app.cls()
    class Model:
        @modal.method()
        def predict(self, x):
            return x

    assert modal.Function.from_name("surface-from-name", "square") is square
    assert modal.Cls.from_name("surface-from-name", "Model") is Model
    with pytest.raises(modal.exception.NotFoundError, match="has no class 'Other' \\(its classes: Model\\)"):
        modal.Cls.from_name("surface-from-name", "Other")
    with pytest.raises(modal.exception.NotFoundError, match="no app 'nowhere'"):
        modal.Function.from_name("nowhere", "square")

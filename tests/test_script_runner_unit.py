"""``nbmodal run file.py``'s runner without an agent: loading a program, what a NAME resolves to, and the
options an entrypoint's signature gives (``nbmodal._script_runner``); ``@app.local_entrypoint``."""

from __future__ import annotations

import datetime
import sys
import textwrap
from pathlib import Path

import pytest

import nbmodal
from nbmodal import serialization
from nbmodal._script_runner import Runnable, ScriptError, load_script, parse_arguments, resolve, split_target

pytestmark = pytest.mark.unit


@pytest.fixture()
def program(tmp_path, monkeypatch):
    """Writes a program and loads it as ``nbmodal run`` does; sys.modules and sys.path restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def load(source: str, name: str = "prog.py"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return load_script(path)

    yield load
    for name in set(sys.modules) - before:
        if name.startswith(("prog", "helper", "_nbmodal_script_")):
            del sys.modules[name]


def options(fn, *argv: str):
    return parse_arguments(Runnable("test", fn, fn), list(argv), prog="nbmodal run test.py")


def test_split_target():
    assert split_target("a/b.py") == (Path("a/b.py"), "")
    assert split_target("b.py::app.main") == (Path("b.py"), "app.main")


def test_options_are_typed_from_the_signature():
    def main(n: int, ratio: float = 0.5, when: datetime.datetime | None = None, name="x", fast: bool = False,
             snake_case: str = "a"):
        pass

    args, kwargs = options(main, "--n", "3", "--when", "2024-01-02T03:04:05", "--fast", "--snake-case", "b")
    assert args == []
    assert kwargs == {"n": 3, "ratio": 0.5, "when": datetime.datetime(2024, 1, 2, 3, 4, 5), "name": "x",
                      "fast": True, "snake_case": "b"}
    assert options(main, "--n=1", "--no-fast", "--snake_case", "c")[1]["snake_case"] == "c"


def test_a_parameter_without_default_is_required_and_bad_values_are_refused(capsys):
    def main(n: int):
        pass

    with pytest.raises(SystemExit) as missing:
        options(main)
    assert missing.value.code == 2 and "--n" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        options(main, "--n", "three")
    assert "invalid int value: 'three'" in capsys.readouterr().err


def test_string_annotations_and_variadic_arguments():
    exec_globals: dict = {}
    exec("from __future__ import annotations\ndef main(n: int = 1, flag: bool = True): pass", exec_globals)
    assert options(exec_globals["main"], "--n", "4", "--no-flag")[1] == {"n": 4, "flag": False}

    def raw(*arglist):
        pass

    assert options(raw, "--foo=1", "positional") == (["--foo=1", "positional"], {})


def test_local_entrypoint_registers_on_its_app():
    app = nbmodal.App("entrypoints")

    @app.local_entrypoint()
    def main(x: int = 1):
        return x * 2

    @app.local_entrypoint
    def bare():
        return "bare"

    @app.local_entrypoint(name="renamed")
    def other():
        return "other"

    assert set(app.registered_entrypoints) == {"main", "bare", "renamed"}
    assert main(x=4) == 8 and bare() == "bare" and app.registered_entrypoints["renamed"]() == "other"
    assert main.__name__ == "main" and main.app is app


def test_the_one_entrypoint_or_the_one_function_is_the_default(program):
    module = program("""\
        import nbmodal as modal
        app = modal.App("one")

        @app.function()
        def f(x: int = 1):
            return x

        @app.local_entrypoint()
        def main():
            pass
        """)
    assert resolve(module, "").label == "local entrypoint main"
    assert resolve(module, "f").label == "function f"
    assert resolve(module, "app.f").label == "function f"
    assert resolve(module, "app").label == "local entrypoint main"
    only_function = program("""\
        import nbmodal as modal
        app = modal.App("only")

        @app.function()
        def g():
            pass
        """, "prog_only.py")
    assert resolve(only_function, "").label == "function g"


def test_what_cant_be_resolved_says_what_there_is(program):
    module = program("""\
        import nbmodal as modal
        app = modal.App("two")

        @app.function()
        def f():
            pass

        @app.function()
        def g():
            pass

        @app.cls()
        class Model:
            @modal.method()
            def predict(self):
                pass
        """)
    with pytest.raises(ScriptError, match=r"say what to run.*it has: f, g, Model.predict"):
        resolve(module, "")
    assert resolve(module, "Model.predict").label == "method Model.predict"
    with pytest.raises(ScriptError, match="class Model has no @method 'fit'"):
        resolve(module, "Model.fit")
    with pytest.raises(ScriptError, match="no local entrypoint, function or class method 'h'"):
        resolve(module, "h")
    no_app = program("x = 1\n", "prog_noapp.py")
    with pytest.raises(ScriptError, match="defines no nbmodal App"):
        resolve(no_app, "")


def test_a_program_imports_its_siblings_and_travels_by_value(program, tmp_path):
    (tmp_path / "helper_mod.py").write_text("def triple(x):\n    return 3 * x\n")
    module = program("""\
        from helper_mod import triple
        import nbmodal as modal
        app = modal.App("value")

        def nine():
            return triple(3)
        """)
    payload = serialization.dumps(module.nine)
    del sys.modules[module.__name__], sys.modules["helper_mod"]  # as on a host that has neither file
    assert serialization.loads(payload)() == 9


def test_a_program_named_like_a_loaded_module_does_not_shadow_it(program):
    import queue

    module = program("import nbmodal as modal\napp = modal.App('q')\n", "queue.py")
    assert module.__name__ == "_nbmodal_script_queue" and sys.modules["queue"] is queue

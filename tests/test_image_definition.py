"""Image definitions and the %%image cell parser (pure: no agent, nothing built)."""

from __future__ import annotations

import hashlib
import importlib.util
import linecache
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import pytest

from nbmodal.exceptions import ImageDefinitionError, NbmodalError
from nbmodal.image import PYTHON_SOURCE_ROOT, Image
from nbmodal.image_cell import parse_image_cell
from wheelhouse import build_wheel

pytestmark = pytest.mark.unit


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- steps and options -------------------------------------------------------------


def test_every_image_starts_with_one_python_step():
    assert [(s.kind, list(s.args)) for s in Image.debian_slim().steps] == [("python", [])]
    step, = Image.debian_slim(python_version="3.12").steps
    assert (step.kind, list(step.args), step.text) == ("python", ["3.12"], "debian_slim(python_version='3.12')")


@pytest.mark.parametrize("version", [3.10, "3", "py3.11", "2.7", ""])
def test_bad_python_version_is_rejected(version):
    with pytest.raises(ImageDefinitionError, match=r"python_version=.*expected a string like '3.11'"):
        Image.debian_slim(version)


def test_image_cannot_be_constructed_directly():
    with pytest.raises(TypeError, match="debian_slim"):
        Image()


def test_pip_install_flattens_packages_and_sets_only_given_options(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    image = Image.debian_slim().pip_install("torch==2.5", ["numpy", "scipy>=1.0"])
    step = image.steps[-1]
    assert (step.kind, list(step.args), dict(step.options)) == ("pip", ["torch==2.5", "numpy", "scipy>=1.0"], {})
    assert step.text == "pip_install('torch==2.5', 'numpy', 'scipy>=1.0')"

    step = Image.debian_slim().pip_install(
        "a", index_url="https://idx/simple", extra_index_url="https://extra/simple", find_links=str(wheels),
        pre=True, extra_options="--no-deps").steps[-1]
    assert dict(step.options) == {
        "index_url": "https://idx/simple", "extra_index_url": "https://extra/simple",
        "find_links": str(wheels.resolve()), "pre": "1", "extra_options": "--no-deps"}
    assert "pre=True" in step.text and "index_url='https://idx/simple'" in step.text


def test_pip_find_links_relative_dir_becomes_absolute_and_urls_stay(tmp_path, monkeypatch):
    (tmp_path / "wh").mkdir()
    monkeypatch.chdir(tmp_path)
    assert Image.debian_slim().pip_install("a", find_links="wh").steps[-1].options["find_links"] == str(
        (tmp_path / "wh").resolve())
    url = "https://download.pytorch.org/whl/torch_stable.html"
    assert Image.debian_slim().pip_install("a", find_links=url).steps[-1].options["find_links"] == url
    # An absolute path that isn't here may exist on the agent's host.
    assert Image.debian_slim().pip_install("a", find_links="/srv/wheels").steps[-1].options["find_links"] == \
        "/srv/wheels"
    with pytest.raises(ImageDefinitionError, match="find_links='nope'.*expected a URL"):
        Image.debian_slim().pip_install("a", find_links="nope")


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_pip_install_rejects_empty_or_non_string_packages(bad):
    with pytest.raises(ImageDefinitionError, match=r"pip_install: package .*expected a non-empty string"):
        Image.debian_slim().pip_install("ok", bad)


def test_pip_install_without_packages_adds_no_step():
    assert len(Image.debian_slim().pip_install().steps) == 1


def test_run_apt_env_workdir_steps():
    image = (Image.debian_slim()
             .run_commands("echo hi", ["make", "make install"])
             .apt_install("git", "ffmpeg")
             .env({"HF_HOME": "/cache", "_X1": ""})
             .workdir("/app"))
    kinds = [(s.kind, list(s.args), dict(s.options), s.remote_path) for s in image.steps[1:]]
    assert kinds == [
        ("run", ["echo hi", "make", "make install"], {}, ""),
        ("apt", ["git", "ffmpeg"], {}, ""),
        ("env", [], {"HF_HOME": "/cache", "_X1": ""}, ""),
        ("workdir", [], {}, "/app"),
    ]
    assert image.steps[2].text == "apt_install('git', 'ffmpeg')"


@pytest.mark.parametrize("variables, message", [
    ({"1BAD": "x"}, "variable name '1BAD'"),
    ({"A-B": "x"}, "variable name 'A-B'"),
    ({"A": 1}, "value of A is int; expected a str"),
])
def test_env_validation(variables, message):
    with pytest.raises(ImageDefinitionError, match=message):
        Image.debian_slim().env(variables)


def test_workdir_must_be_absolute():
    with pytest.raises(ImageDefinitionError, match=r"workdir: path='app'; expected an absolute path"):
        Image.debian_slim().workdir("app")


def test_apt_package_names_have_no_spaces():
    with pytest.raises(ImageDefinitionError, match="apt_install: package 'git vim'"):
        Image.debian_slim().apt_install("git vim")


def test_preload_and_force_build_reach_the_spec():
    image = Image.debian_slim().pip_install("torch", force_build=True).preload("torch", "numpy.linalg")
    spec = image.to_spec("gpu")
    assert (spec.name, list(spec.preload), spec.force_build) == ("gpu", ["torch", "numpy.linalg"], True)
    assert not Image.debian_slim().pip_install("torch").to_spec().force_build
    with pytest.raises(ImageDefinitionError, match="preload: 'not a module'"):
        Image.debian_slim().preload("not a module")


def test_images_are_immutable_builders():
    base = Image.debian_slim()
    derived = base.pip_install("numpy").env({"A": "1"})
    assert len(base.steps) == 1 and len(derived.steps) == 3
    assert isinstance(derived._steps, tuple)
    # What callers get are copies: changing them changes nothing in the image.
    derived.to_spec().steps[1].args.append("evil")
    derived.steps[1].args.append("evil")
    assert list(derived.steps[1].args) == ["numpy"]
    assert derived.to_spec() == derived.to_spec()


def test_run_function_pickles_function_and_arguments():
    def build_step(a, b=0):
        return a * 10 + b

    image = Image.debian_slim().run_function(build_step, args=(4,), kwargs={"b": 2})
    step = image.steps[-1]
    assert step.kind == "run_function"
    assert step.text.startswith("run_function ") and step.text.endswith("build_step")
    fn, args, kwargs = cloudpickle.loads(step.payload)
    assert (args, kwargs, fn(*args, **kwargs)) == ((4,), {"b": 2}, 42)
    with pytest.raises(ImageDefinitionError, match="not callable"):
        Image.debian_slim().run_function("nope")


def test_repr_lists_steps_and_mounts(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    text = repr(Image.debian_slim("3.11").pip_install("numpy").add_local_dir(tmp_path, "/data"))
    assert "1. debian_slim(python_version='3.11')" in text and "2. pip_install('numpy')" in text
    assert "mount /data (1 files)" in text


# -- requirements and pyproject ----------------------------------------------------


def test_requirements_file_travels_as_payload(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_bytes(b"numpy==2.0\n# comment\nrequests\n")
    step = Image.debian_slim().pip_install_from_requirements(req, index_url="https://idx").steps[-1]
    assert (step.kind, step.payload, dict(step.options)) == (
        "requirements", b"numpy==2.0\n# comment\nrequests\n", {"index_url": "https://idx"})


def test_missing_requirements_file_names_path_and_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageDefinitionError) as info:
        Image.debian_slim().pip_install_from_requirements("missing-reqs.txt")
    assert "'missing-reqs.txt'" in str(info.value) and repr(str(tmp_path)) in str(info.value)
    assert isinstance(info.value, NbmodalError)


def _write_pyproject(path: Path) -> Path:
    path.write_text(textwrap.dedent("""
        [project]
        name = "demo"
        version = "0.1"
        dependencies = ["requests>=2", "numpy"]

        [project.optional-dependencies]
        train = ["torch==2.5", "numpy"]
        dev = ["pytest"]
    """))
    return path


def test_pyproject_dependencies_and_groups(tmp_path):
    pyproject = _write_pyproject(tmp_path / "pyproject.toml")
    step = Image.debian_slim().pip_install_from_pyproject(pyproject).steps[-1]
    assert (step.kind, list(step.args), step.text) == ("pip", ["requests>=2", "numpy"], f"pyproject {pyproject}")
    step = Image.debian_slim().pip_install_from_pyproject(pyproject, ["train", "dev"], pre=True).steps[-1]
    assert list(step.args) == ["requests>=2", "numpy", "torch==2.5", "pytest"]
    assert step.options["pre"] == "1"
    assert step.text == f"pyproject {pyproject} [train, dev]"


def test_pyproject_unknown_group_lists_the_groups(tmp_path):
    pyproject = _write_pyproject(tmp_path / "pyproject.toml")
    with pytest.raises(ImageDefinitionError, match=r"group 'gpu' is not in .*its groups: dev, train"):
        Image.debian_slim().pip_install_from_pyproject(pyproject, ["gpu"])


def test_pyproject_without_project_table(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.poetry]\nname = 'x'\n")
    with pytest.raises(ImageDefinitionError, match=r"no \[project\] table"):
        Image.debian_slim().pip_install_from_pyproject(path)


# -- local files -------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    for rel, data in {
        "a.txt": b"alpha", "run.sh": b"#!/bin/sh\n", "mod.pyc": b"\0", "sub/b.txt": b"beta",
        "sub/c.log": b"log", "__pycache__/x.cpython-311.pyc": b"\0", ".git/HEAD": b"ref",
        "sub/deeper/d.txt": b"delta", "sub/deeper/notes.md": b"notes",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "run.sh").chmod(0o755)
    return root


def _files(mount_or_step) -> dict[str, tuple[str, int, int]]:
    return {f.path: (f.sha256, f.size, f.mode) for f in mount_or_step.files}


def test_add_local_dir_hashes_every_file_by_default(tree):
    image = Image.debian_slim().add_local_dir(tree, "/data")
    mount, = image.local_mounts()
    files = _files(mount)
    assert mount.remote_path == "/data"
    assert set(files) == {"a.txt", "run.sh", "mod.pyc", "sub/b.txt", "sub/c.log",
                          "__pycache__/x.cpython-311.pyc", ".git/HEAD", "sub/deeper/d.txt",
                          "sub/deeper/notes.md"}
    assert files["a.txt"] == (_sha(b"alpha"), 5, (tree / "a.txt").stat().st_mode & 0o7777)
    assert files["run.sh"][2] == 0o755
    assert image.local_files()[_sha(b"beta")] == tree / "sub/b.txt"


def test_add_local_dir_ignore_patterns_match_path_and_components(tree):
    image = Image.debian_slim().add_local_dir(tree, "/data", ignore=["*.pyc", "__pycache__", ".git", "sub/*.log"])
    assert set(_files(image.local_mounts()[0])) == {"a.txt", "run.sh", "sub/b.txt", "sub/deeper/d.txt",
                                                    "sub/deeper/notes.md"}
    image = Image.debian_slim().add_local_dir(tree, "/data", ignore=["deeper", "**/*.txt"])
    assert set(_files(image.local_mounts()[0])) == {
        "run.sh", "mod.pyc", "sub/c.log", "__pycache__/x.cpython-311.pyc", ".git/HEAD"}


def test_add_local_dir_ignore_function_gets_relative_paths(tree):
    seen = []

    def ignore(path: Path) -> bool:
        seen.append(path)
        return path.parts[0] == "sub"
    image = Image.debian_slim().add_local_dir(tree, "/data", ignore=ignore)
    assert not any(p.startswith("sub") for p in _files(image.local_mounts()[0]))
    assert all(not p.is_absolute() for p in seen) and Path("sub") in seen


def test_copy_false_mounts_and_copy_true_steps(tree):
    mounted = Image.debian_slim().add_local_dir(tree, "/data", ignore=[".git"])
    copied = Image.debian_slim().add_local_dir(tree, "/data", ignore=[".git"], copy=True)
    assert len(mounted.steps) == 1 and len(mounted.local_mounts()) == 1
    assert mounted.to_spec() == Image.debian_slim().to_spec()  # files in a mount never change the build
    step = copied.steps[-1]
    assert (step.kind, step.remote_path, copied.local_mounts()) == ("add_local", "/data", [])
    assert _files(step) == _files(mounted.local_mounts()[0])
    assert copied.local_files() == mounted.local_files()
    assert step.text == f"add_local_dir({str(tree)!r}, '/data', copy=True)"


def test_changed_file_changes_its_hash(tree):
    before = _files(Image.debian_slim().add_local_dir(tree, "/d").local_mounts()[0])["a.txt"][0]
    (tree / "a.txt").write_bytes(b"alpha, edited")
    after = _files(Image.debian_slim().add_local_dir(tree, "/d").local_mounts()[0])["a.txt"][0]
    assert (before, after) == (_sha(b"alpha"), _sha(b"alpha, edited"))


def test_add_local_file_is_a_basename_under_its_parent(tree):
    image = Image.debian_slim().add_local_file(tree / "a.txt", "/etc/app/config.txt")
    mount, = image.local_mounts()
    assert (mount.remote_path, list(_files(mount))) == ("/etc/app", ["config.txt"])
    step = Image.debian_slim().add_local_file(tree / "a.txt", "/etc/app/", copy=True).steps[-1]
    assert (step.kind, step.remote_path, [f.path for f in step.files]) == ("add_local", "/etc/app", ["a.txt"])
    with pytest.raises(ImageDefinitionError, match="remote_path='relative/x'; expected an absolute path"):
        Image.debian_slim().add_local_file(tree / "a.txt", "relative/x")
    with pytest.raises(ImageDefinitionError, match="is not a file"):
        Image.debian_slim().add_local_file(tree / "sub", "/x")


def test_add_local_python_source_package_and_module(tmp_path, monkeypatch):
    pkg = tmp_path / "src" / "mylib_for_image"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / ".hidden").mkdir()
    for rel, text in {"__init__.py": "X = 1", "core.py": "Y = 2", "data.json": "{}", "__pycache__/core.pyc": "",
                      ".hidden/h.py": ""}.items():
        (pkg / rel).write_text(text)
    (tmp_path / "src" / "single_mod_for_image.py").write_text("Z = 3")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))

    image = Image.debian_slim().env({"PYTHONPATH": "/opt/lib"}).add_local_python_source(
        "mylib_for_image", "single_mod_for_image")
    mount, = image.local_mounts()  # one directory on PYTHONPATH holds them all
    assert (mount.remote_path, set(_files(mount))) == (
        PYTHON_SOURCE_ROOT, {"mylib_for_image/__init__.py", "mylib_for_image/core.py", "single_mod_for_image.py"})
    env = image.steps[-1]
    assert (env.kind, dict(env.options)) == ("env", {"PYTHONPATH": f"{PYTHON_SOURCE_ROOT}:/opt/lib"})
    # A second call doesn't add PYTHON_SOURCE_ROOT again.
    again = image.add_local_python_source("single_mod_for_image")
    assert len(again.steps) == len(image.steps)

    with_data = Image.debian_slim().add_local_python_source("mylib_for_image", ignore=["core.py"], copy=True)
    step = with_data.steps[1]
    assert (step.kind, step.remote_path, {f.path for f in step.files}) == (
        "add_local", PYTHON_SOURCE_ROOT, {"mylib_for_image/__init__.py", "mylib_for_image/data.json"})
    assert with_data.steps[2].options["PYTHONPATH"] == PYTHON_SOURCE_ROOT


def test_python_source_layout_imports_with_the_images_pythonpath(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "pkg_layout_check").mkdir(parents=True)
    (src / "pkg_layout_check" / "__init__.py").write_text("from .inner import VALUE")
    (src / "pkg_layout_check" / "inner.py").write_text("VALUE = 'from the package'")
    (src / "mod_layout_check.py").write_text("import pkg_layout_check\nVALUE = pkg_layout_check.VALUE")
    monkeypatch.syspath_prepend(str(src))
    image = Image.debian_slim().add_local_python_source("pkg_layout_check", "mod_layout_check")
    # Lay the mount out as the agent would (under a stand-in root) and import with the image's PYTHONPATH.
    fake_root = tmp_path / "container"
    files = image.local_files()
    for mount in image.local_mounts():
        for f in mount.files:
            dest = fake_root / mount.remote_path.lstrip("/") / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(files[f.sha256], dest)
    pythonpath = image.steps[-1].options["PYTHONPATH"].replace("/", str(fake_root) + "/", 1)
    out = subprocess.run([sys.executable, "-c", "import mod_layout_check; print(mod_layout_check.VALUE)"],
                         env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == "from the package"


def test_mounts_never_overlap_files_join_the_enclosing_mount(tmp_path):
    # The agent binds each mount's directory at its path: overlapping mounts would hide each other.
    for name, data in {"a": b"A", "b": b"B", "c": b"C", "d": b"D"}.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_bytes(b"X")
    image = (Image.debian_slim()
             .add_local_file(tmp_path / "a", "/app/a")
             .add_local_file(tmp_path / "b", "/app/b")            # same directory: same mount
             .add_local_file(tmp_path / "c", "/app/conf/c")       # inside /app: joins it
             .add_local_file(tmp_path / "d", "/srv/deep/d")
             .add_local_dir(tmp_path / "dir", "/srv")             # encloses /srv/deep: takes it in
             .add_local_file(tmp_path / "d", "/app/a"))           # a later file replaces an earlier one
    mounts = {m.remote_path: {f.path: f.sha256 for f in m.files} for m in image.local_mounts()}
    assert mounts == {
        "/app": {"a": _sha(b"D"), "b": _sha(b"B"), "conf/c": _sha(b"C")},
        "/srv": {"deep/d": _sha(b"D"), "x": _sha(b"X")},
    }
    assert "add_local_file" in repr(image) and "add_local_dir" in repr(image)


def test_add_local_python_source_errors():
    with pytest.raises(ImageDefinitionError, match="no module 'surely_not_a_module_xyz'"):
        Image.debian_slim().add_local_python_source("surely_not_a_module_xyz")
    with pytest.raises(ImageDefinitionError, match="expected a top-level module name"):
        Image.debian_slim().add_local_python_source("os.path")
    with pytest.raises(ImageDefinitionError, match="not a Python source file"):
        Image.debian_slim().add_local_python_source("sys")


# -- image.imports() ---------------------------------------------------------------

_IMPORTS_MODULE = '''
def define(image):
    with image.imports():
        import json
        import surely_missing_pkg_xyz.sub as missing
        from collections import OrderedDict
        value = 1
    return "after the block"


def define_multiline(image):
    with (
        image.imports()
    ):
        from os import path as p


def failing(image):
    with image.imports():
        import json
        1 / 0
'''


@pytest.fixture()
def imports_module(tmp_path):
    path = tmp_path / "imports_user_module.py"
    path.write_text(_IMPORTS_MODULE)
    spec = importlib.util.spec_from_file_location("imports_user_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_suppresses_import_error_and_records_statements(imports_module):
    image = Image.debian_slim()
    assert imports_module.define(image) == "after the block"
    spec = image.to_spec()
    assert spec.imports == ("import json\nimport surely_missing_pkg_xyz.sub as missing\n"
                            "from collections import OrderedDict")
    assert list(spec.preload) == ["json", "surely_missing_pkg_xyz", "collections"]
    imports_module.define(image)  # running the cell again records nothing twice
    assert image.to_spec() == spec
    imports_module.define_multiline(image)
    assert image.to_spec().imports.endswith("\nfrom os import path as p")


def test_imports_are_recorded_on_that_image_and_carried_to_later_derivations(imports_module):
    base = Image.debian_slim()
    before = base.pip_install("numpy")
    imports_module.define(base)
    after = base.pip_install("numpy")
    assert before.to_spec().imports == "" and "import json" in after.to_spec().imports


def test_imports_lets_other_errors_through(imports_module):
    with pytest.raises(ZeroDivisionError):
        imports_module.failing(Image.debian_slim())


def test_imports_from_a_notebook_cell_in_linecache():
    filename = "<ipython-input-test-image-imports>"
    source = "with image.imports():\n    import not_installed_here_xyz\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        image = Image.debian_slim()
        exec(compile(source, filename, "exec"), {"image": image})
        assert image.to_spec().imports == "import not_installed_here_xyz"
    finally:
        linecache.cache.pop(filename, None)


def test_imports_without_source_says_where_to_put_them():
    image = Image.debian_slim()
    code = compile("with image.imports():\n    import json\n", "<no-source-anywhere>", "exec")
    with pytest.raises(ImageDefinitionError, match="in a file or a notebook cell"):
        exec(code, {"image": image})


# -- the %%image cell --------------------------------------------------------------


def test_image_cell_every_keyword(tmp_path, tree):
    (tmp_path / "requirements.txt").write_text("requests\n")
    _write_pyproject(tmp_path / "pyproject.toml")
    (tmp_path / "wheels").mkdir()
    shutil.copytree(tree, tmp_path / "data")
    cell = textwrap.dedent("""
        # a comment, then a blank line

        python 3.11
        pip torch==2.5 "numpy>=2" --index-url https://idx/simple --extra-index-url=https://x --find-links wheels --pre
        requirements requirements.txt
        pyproject pyproject.toml train
        run echo "hi there" && ls # shell comment
        env A=1 B='two words'
        workdir /app
        add data /data --ignore .git --ignore '*.pyc'
        add data/a.txt /etc/a.txt --copy
        apt git curl
        preload torch numpy
    """)
    image = parse_image_cell("train", cell, tmp_path)
    assert image.name == "train" and image.to_spec().name == "train"
    steps = [(s.kind, list(s.args)) for s in image.steps]
    assert steps == [
        ("python", ["3.11"]),
        ("pip", ["torch==2.5", "numpy>=2"]),
        ("requirements", []),
        ("pip", ["requests>=2", "numpy", "torch==2.5"]),
        ("run", ['echo "hi there" && ls # shell comment']),
        ("env", []),
        ("workdir", []),
        ("add_local", []),
        ("apt", ["git", "curl"]),
    ]
    pip = image.steps[1]
    assert dict(pip.options) == {"index_url": "https://idx/simple", "extra_index_url": "https://x",
                                 "find_links": str((tmp_path / "wheels").resolve()), "pre": "1"}
    assert pip.text.startswith("line 5: pip torch==2.5")
    assert image.steps[0].text == "line 4: python 3.11"
    assert image.steps[2].payload == b"requests\n"
    assert dict(image.steps[5].options) == {"A": "1", "B": "two words"}
    assert image.steps[6].remote_path == "/app"
    assert (image.steps[7].remote_path, [f.path for f in image.steps[7].files]) == ("/etc", ["a.txt"])
    mount, = image.local_mounts()
    assert mount.remote_path == "/data" and not any(
        f.path.startswith(".git") or f.path.endswith(".pyc") for f in mount.files)
    assert "line 11: add data /data" in repr(image) and "add_local_dir" not in repr(image)
    assert list(image.to_spec().preload) == ["torch", "numpy"]


def test_parse_image_cell_is_importable_from_nbmodal_image():
    from nbmodal.image import parse_image_cell as reexported
    assert reexported is parse_image_cell


def test_image_cell_defaults_to_the_agents_python(tmp_path):
    image = parse_image_cell("x", "pip numpy\n", tmp_path)
    assert [(s.kind, list(s.args)) for s in image.steps] == [("python", []), ("pip", ["numpy"])]
    assert len(parse_image_cell("empty", "# nothing\n\n", tmp_path).steps) == 1


@pytest.mark.parametrize("cell, line, expected", [
    ("pip numpy\ncompile foo", "line 2: 'compile foo': ", "unknown keyword 'compile'; expected one of: python, pip"),
    ("env A=1 B", "line 1: 'env A=1 B': ", "'B' is not NAME=VALUE"),
    ("python 3.11\n\nworkdir app", "line 3: 'workdir app': ", "expected an absolute path"),
    ("pip numpy\npython 3.11", "line 2: 'python 3.11': ", "python must be the first step"),
    ("requirements missing.txt", "line 1: 'requirements missing.txt': ", "no file "),
    ("python three", "line 1: 'python three': ", "expected a string like '3.11'"),
    ("pip", "line 1: 'pip': ", "expected at least one package"),
    ("pip numpy --upgrade", "line 1: 'pip numpy --upgrade': ", "unknown option '--upgrade'"),
    ("add nothing-here /x", "line 1: 'add nothing-here /x': ", "no file or directory"),
    ("pyproject pyproject.toml gpu", "line 1: 'pyproject pyproject.toml gpu': ", "its groups: dev, train"),
    ("env A='unclosed", "line 1: \"env A='unclosed\": ", "can't split"),
])
def test_image_cell_errors_name_the_line(tmp_path, cell, line, expected):
    _write_pyproject(tmp_path / "pyproject.toml")
    with pytest.raises(ImageDefinitionError) as info:
        parse_image_cell("bad", cell, tmp_path)
    message = str(info.value)
    assert message.startswith(f"%%image bad, {line}"), message
    assert expected in message, message


def test_image_cell_missing_requirements_names_base_dir(tmp_path):
    with pytest.raises(ImageDefinitionError, match=f"relative paths are relative to {str(tmp_path)!r}"):
        parse_image_cell("r", "requirements reqs/missing.txt", tmp_path)


# -- the test wheelhouse -----------------------------------------------------------


def test_wheelhouse_wheel_installs_offline_with_its_dependency(tmp_path):
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.skip("uv is not installed beside this Python")
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "fake-dep", "0.1", {"fakedep": "X = 41"})
    build_wheel(wheels, "fake-lib", "1.0", {"fakelib": "from fakedep import X\nVALUE = X + 1", "fakelib.sub": "Y = 2"},
                requires=["fake-dep>=0.1"])
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, venv], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", venv / "bin/python", "--no-index",
                    "--find-links", wheels, "fake-lib"], check=True)
    out = subprocess.run([venv / "bin/python", "-c", "import fakelib.sub; print(fakelib.VALUE, fakelib.sub.Y)"],
                         check=True, capture_output=True, text=True).stdout
    assert out.split() == ["42", "2"]

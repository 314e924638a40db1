"""``nbmodal.Image``: what a container's environment holds, defined as in Modal.

    image = (
        nbmodal.Image.debian_slim(python_version="3.11")
        .pip_install("torch==2.5", "numpy")
        .env({"HF_HOME": "/cache"})
        .add_local_dir("data", "/data")
    )
    with image.imports():
        import torch          # may exist only remotely

This module only *defines* images: an immutable builder whose methods each
return a new ``Image``. ``to_spec()`` turns it into the wire ``ImageSpec``;
the agent builds it (a layer per step, cached by definition). Local files are
hashed here, by content, so only files the agent lacks need to be sent
(``local_files()`` maps each hash to its local path for that upload).

``copy=False`` (the default for ``add_local_*``, as in Modal) adds no build
step: the files become a ``LocalMount`` that the agent puts in place when a
container starts, so editing them never triggers a rebuild.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import hashlib
import importlib.util
import inspect
import linecache
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import FrameType, TracebackType
from typing import Any

from nbmodal import serialization
from nbmodal._function_options import warn_no_effect
from nbmodal.exceptions import DeprecationError, ImageDefinitionError, not_available
from nbmodal_wire import pb

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

# Where add_local_python_source puts modules in the container; the image adds
# this directory to PYTHONPATH (an "env" step) so containers can import them.
PYTHON_SOURCE_ROOT = "/root/.nbmodal-python-source"

IgnoreSpec = Sequence[str] | Callable[[Path], bool]

_PYTHON_VERSION = re.compile(r"^3\.\d+(\.\d+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class Image:
    """A container image definition; start with ``Image.debian_slim()``.

    Every method returns a new ``Image`` and leaves this one as it is::

        base = Image.debian_slim()
        gpu = base.pip_install("torch")   # base still has no torch

    ``name`` (default ``""``) labels the image in listings and build logs.
    """

    __slots__ = ("name", "_steps", "_mounts", "_mount_texts", "_files", "_preload",
                 "_force_build", "_imports", "_import_modules")

    name: str
    _steps: tuple[pb.ImageStep, ...]
    _mounts: tuple[pb.LocalMount, ...]
    _mount_texts: tuple[tuple[str, ...], ...]  # per mount, the calls that added its files
    _files: dict[str, Path]  # never changed in place: each image gets its own
    _preload: tuple[str, ...]
    _force_build: bool
    _imports: list[str]
    _import_modules: list[str]

    def __init__(self) -> None:
        raise TypeError("create an Image with Image.debian_slim()")

    # -- construction --------------------------------------------------------------

    @staticmethod
    def debian_slim(python_version: str | None = None, force_build: bool = False) -> Image:
        """A base image with Python ``python_version`` ("3.11"); ``None``: the agent's own Python.
        ``force_build`` rebuilds every step of the image, ignoring the cache.

        Example::

            image = Image.debian_slim(python_version="3.12")
        """
        if python_version is None:
            args, text = [], "debian_slim()"
        else:
            if not isinstance(python_version, str) or not _PYTHON_VERSION.match(python_version):
                raise ImageDefinitionError(
                    f"debian_slim: python_version={python_version!r}; expected a string like '3.11' or '3.11.7'")
            args, text = [python_version], f"debian_slim(python_version={python_version!r})"
        image = object.__new__(Image)
        image.name = ""
        image._steps = (pb.ImageStep(kind="python", args=args, text=text),)
        image._mounts = ()
        image._mount_texts = ()
        image._files = {}
        image._preload = ()
        image._force_build = force_build
        image._imports = []
        image._import_modules = []
        return image

    def _derive(self, step: pb.ImageStep | None = None, *, mount: pb.LocalMount | None = None,
                mount_text: str = "", files: Mapping[str, Path] | None = None,
                preload: Iterable[str] = (), force_build: bool = False) -> Image:
        """A copy of this image with one more step and/or mount (this one is untouched)."""
        image = object.__new__(Image)
        image.name = self.name
        image._steps = self._steps + ((step,) if step is not None else ())
        image._mounts, image._mount_texts = self._mounts, self._mount_texts
        if mount is not None:
            image._mounts, image._mount_texts = _add_mount(self._mounts, self._mount_texts, mount, mount_text)
        image._files = {**self._files, **(files or {})}
        image._preload = tuple(dict.fromkeys(self._preload + tuple(preload)))
        image._force_build = self._force_build or force_build
        # imports() recorded so far carry over; later ones stay on the image they were made on.
        image._imports = list(self._imports)
        image._import_modules = list(self._import_modules)
        return image

    # -- packages ------------------------------------------------------------------

    def pip_install(self, *packages: str | Sequence[str], index_url: str | None = None,
                    extra_index_url: str | None = None, find_links: str | None = None,
                    pre: bool = False, extra_options: str = "", force_build: bool = False,
                    secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        """Install Python packages, as `pip install` would.

        ``find_links`` is a URL or a directory: a local directory is stored as
        its absolute path, which suits an agent on this machine; for a remote
        host give a URL or a path that exists on that host.

        Example::

            image = Image.debian_slim().pip_install("torch==2.5", "numpy", pre=True)
        """
        sources = _build_step_extras("pip_install", secrets, gpu)
        names = _package_list("pip_install", packages)
        options = _pip_options("pip_install", index_url, extra_index_url, find_links, pre, extra_options)
        text = _call_text("pip_install", names, _given(index_url=index_url, extra_index_url=extra_index_url,
                                                        find_links=find_links, pre=pre, extra_options=extra_options))
        if not names:
            return self._derive(force_build=force_build)  # as in Modal: nothing to install
        return self._derive(_with_secrets(pb.ImageStep(kind="pip", args=names, options=options, text=text), sources),
                            force_build=force_build)

    def uv_pip_install(self, *packages: str | Sequence[str], requirements: Sequence[str | os.PathLike] | None = None,
                       find_links: str | None = None, index_url: str | None = None,
                       extra_index_url: str | None = None, pre: bool = False, extra_options: str = "",
                       force_build: bool = False, uv_version: str | None = None, secrets: Sequence[Any] = (),
                       gpu: Any = None) -> Image:
        """Modal's uv-based install. Every install here is made with uv, so this is ``pip_install`` (after
        the ``requirements`` files, each as ``pip_install_from_requirements``); ``uv_version`` is the host's.

        Example::

            image = Image.debian_slim().uv_pip_install("numpy", secrets=[nbmodal.Secret.from_name("pypi")])
        """
        options = dict(find_links=find_links, index_url=index_url, extra_index_url=extra_index_url, pre=pre,
                       extra_options=extra_options, force_build=force_build, secrets=secrets, gpu=gpu)
        image = self
        for path in requirements or ():
            image = image.pip_install_from_requirements(path, **options)
        return image.pip_install(*packages, **options)

    def pip_install_from_requirements(self, requirements_txt: str | os.PathLike, *, index_url: str | None = None,
                                      extra_index_url: str | None = None, find_links: str | None = None,
                                      pre: bool = False, extra_options: str = "",
                                      force_build: bool = False, secrets: Sequence[Any] = (),
                                      gpu: Any = None) -> Image:
        """Install the packages of a local requirements file (read now; its text travels with the spec).

        Lines that name local paths (``-e .``, ``-r other.txt``) refer to the
        agent's host, not to this machine.

        Example::

            image = Image.debian_slim().pip_install_from_requirements("requirements.txt")
        """
        sources = _build_step_extras("pip_install_from_requirements", secrets, gpu)
        path = Path(requirements_txt).expanduser()
        try:
            payload = path.read_bytes()
        except OSError as exc:
            raise ImageDefinitionError(
                f"pip_install_from_requirements: can't read {str(requirements_txt)!r} "
                f"(resolved against the current directory {os.getcwd()!r}): {exc.strerror or exc}; "
                "expected the path of a requirements file") from None
        options = _pip_options("pip_install_from_requirements", index_url, extra_index_url, find_links, pre,
                               extra_options)
        text = _call_text("pip_install_from_requirements", [str(requirements_txt)],
                          _given(index_url=index_url, extra_index_url=extra_index_url, find_links=find_links,
                                 pre=pre, extra_options=extra_options))
        step = pb.ImageStep(kind="requirements", options=options, payload=payload, text=text)
        return self._derive(_with_secrets(step, sources), force_build=force_build)

    def pip_install_from_pyproject(self, pyproject_toml: str | os.PathLike,
                                   optional_dependencies: Sequence[str] = (), *, index_url: str | None = None,
                                   extra_index_url: str | None = None, find_links: str | None = None,
                                   pre: bool = False, extra_options: str = "", force_build: bool = False,
                                   secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        """Install ``[project].dependencies`` of a pyproject.toml, plus the named optional groups.

        Example::

            image = Image.debian_slim().pip_install_from_pyproject("pyproject.toml", ["train"])
        """
        sources = _build_step_extras("pip_install_from_pyproject", secrets, gpu)
        groups = [optional_dependencies] if isinstance(optional_dependencies, str) else list(optional_dependencies)
        packages = _pyproject_dependencies(Path(pyproject_toml).expanduser(), groups)
        options = _pip_options("pip_install_from_pyproject", index_url, extra_index_url, find_links, pre,
                               extra_options)
        text = f"pyproject {pyproject_toml}" + (f" [{', '.join(groups)}]" if groups else "")
        if not packages:
            log.info("%s: no dependencies to install", text)
            return self._derive(force_build=force_build)
        return self._derive(_with_secrets(pb.ImageStep(kind="pip", args=packages, options=options, text=text),
                                          sources), force_build=force_build)

    def apt_install(self, *packages: str | Sequence[str], force_build: bool = False, secrets: Sequence[Any] = (),
                    gpu: Any = None) -> Image:
        """Install Debian packages with apt.

        Example::

            image = Image.debian_slim().apt_install("git", "ffmpeg")
        """
        sources = _build_step_extras("apt_install", secrets, gpu)
        names = _package_list("apt_install", packages)
        for name in names:
            if any(ch.isspace() for ch in name):
                raise ImageDefinitionError(
                    f"apt_install: package {name!r} contains whitespace; expected one package name per argument")
        if not names:
            return self._derive(force_build=force_build)
        return self._derive(_with_secrets(pb.ImageStep(kind="apt", args=names,
                                                       text=_call_text("apt_install", names, {})), sources),
                            force_build=force_build)

    # -- commands and settings -----------------------------------------------------

    def run_commands(self, *commands: str | Sequence[str], force_build: bool = False, secrets: Sequence[Any] = (),
                     gpu: Any = None) -> Image:
        """Run shell commands, in order, each as its own ``sh -c``.

        Example::

            image = Image.debian_slim().run_commands("git clone https://x/y /app", "cd /app && make")
        """
        sources = _build_step_extras("run_commands", secrets, gpu)
        cmds = _string_list("run_commands", "command", commands)
        if not cmds:
            return self._derive(force_build=force_build)
        return self._derive(_with_secrets(pb.ImageStep(kind="run", args=cmds,
                                                       text=_call_text("run_commands", cmds, {})), sources),
                            force_build=force_build)

    def env(self, vars: dict[str, str]) -> Image:
        """Set environment variables for later build steps and for containers.

        Example::

            image = Image.debian_slim().env({"HF_HUB_ENABLE_HF_TRANSFER": "1"})
        """
        if not isinstance(vars, Mapping):
            raise ImageDefinitionError(f"env: got {type(vars).__name__}; expected a dict of str to str")
        for key, value in vars.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ImageDefinitionError(
                    f"env: variable name {key!r}; expected letters, digits and '_', not starting with a digit")
            if not isinstance(value, str):
                raise ImageDefinitionError(f"env: value of {key} is {type(value).__name__}; expected a str")
        if not vars:
            return self._derive()
        return self._derive(pb.ImageStep(kind="env", options=dict(vars), text=f"env({dict(vars)!r})"))

    def workdir(self, path: str | PurePosixPath) -> Image:
        """Set the working directory for later build steps and for containers.

        Example::

            image = Image.debian_slim().workdir("/app")
        """
        remote = _remote_path("workdir", "path", path)
        return self._derive(pb.ImageStep(kind="workdir", remote_path=remote, text=f"workdir({str(path)!r})"))

    def preload(self, *modules: str) -> Image:
        """Modules the agent imports once, before it forks containers (they start with them loaded).

        Example::

            image = Image.debian_slim().pip_install("torch").preload("torch")
        """
        for module in modules:
            if not isinstance(module, str) or not _MODULE_NAME.match(module):
                raise ImageDefinitionError(f"preload: {module!r}; expected a module name like 'torch' or 'a.b'")
        return self._derive(preload=modules)

    def run_function(self, raw_f: Callable[..., Any], args: Sequence[Any] = (),
                     kwargs: dict[str, Any] | None = None, *, force_build: bool = False, secrets: Sequence[Any] = (),
                     gpu: Any = None, volumes: Mapping[str, Any] | None = None,
                     network_file_systems: Mapping[str, Any] | None = None, cpu: float | None = None,
                     memory: int | None = None,
                     timeout: int | None = None, cloud: str | None = None, region: str | None = None,
                     include_source: bool | None = None) -> Image:
        """Run ``fn(*args, **kwargs)`` in the image during the build; what it writes becomes a layer.

        The function travels pickled (notebook functions by value), so
        changing it changes the step and rebuilds from there.

        Example::

            def download():
                from huggingface_hub import snapshot_download
                snapshot_download("gpt2")

            image = Image.debian_slim().pip_install("huggingface_hub").run_function(download)
        """
        fn = raw_f
        sources = _build_step_extras("run_function", secrets, gpu)
        if volumes or network_file_systems:
            raise not_available("Image.run_function(volumes=...)", "a build step sees no volumes; "
                                "copy what it needs with add_local_* or download it in the function")
        for keyword, value, why in (("cpu", cpu, "a build step runs as a process on the host"),
                                    ("memory", memory, "a build step runs as a process on the host"),
                                    ("timeout", timeout, "a build step runs until it ends"),
                                    ("cloud", cloud, "there is no cloud provider to choose"),
                                    ("region", region, "there are no regions")):
            if value is not None:
                warn_no_effect(f"Image.run_function({keyword}=...)", why)
        if not callable(fn):
            raise ImageDefinitionError(f"run_function: {fn!r} is not callable; expected a function")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ImageDefinitionError(f"run_function: kwargs is {type(kwargs).__name__}; expected a dict")
        try:
            payload = serialization.dumps((fn, tuple(args), dict(kwargs or {})))
        except Exception as exc:
            raise ImageDefinitionError(f"run_function: can't pickle {fn!r} with its arguments: {exc}") from exc
        name = getattr(fn, "__qualname__", None) or repr(fn)
        return self._derive(_with_secrets(pb.ImageStep(kind="run_function", payload=payload,
                                                       text=f"run_function {name}"), sources),
                            force_build=force_build)

    # -- local files ---------------------------------------------------------------

    def add_local_file(self, local_path: str | os.PathLike, remote_path: str | PurePosixPath, *,
                       copy: bool = False) -> Image:
        """Put a local file at ``remote_path`` (a full path; ending in "/": keep the file's name).

        Example::

            image = Image.debian_slim().add_local_file("config.yaml", "/app/config.yaml")
        """
        local = _local_path("add_local_file", local_path)
        if not local.is_file():
            raise ImageDefinitionError(f"add_local_file: {str(local_path)!r} is not a file (looked at {local})")
        remote = str(remote_path)
        target = PurePosixPath(_remote_path("add_local_file", "remote_path", remote))
        if remote.endswith("/"):
            target = target / local.name
        files = {target.name: local}
        text = f"add_local_file({str(local_path)!r}, {remote!r}" + (", copy=True)" if copy else ")")
        return self._add_files(str(target.parent), files, copy, text)

    def add_local_dir(self, local_path: str | os.PathLike, remote_path: str | PurePosixPath, *,
                      copy: bool = False, ignore: IgnoreSpec = ()) -> Image:
        """Put a local directory's files under ``remote_path``.

        ``ignore``: glob patterns, each matched against a file's path relative
        to ``local_path`` and against each of its components ("*.pyc",
        "__pycache__", ".git"); or a function of that relative ``Path`` that
        returns True to skip it. Default: nothing is skipped. Empty directories
        are not recreated.

        Example::

            image = Image.debian_slim().add_local_dir("src", "/app/src", ignore=["__pycache__", "*.pyc"])
        """
        local = _local_path("add_local_dir", local_path)
        if not local.is_dir():
            raise ImageDefinitionError(f"add_local_dir: {str(local_path)!r} is not a directory (looked at {local})")
        remote = _remote_path("add_local_dir", "remote_path", remote_path)
        files = _collect_dir(local, _ignore_predicate("add_local_dir", ignore))
        text = f"add_local_dir({str(local_path)!r}, {str(remote_path)!r}" + (", copy=True)" if copy else ")")
        return self._add_files(remote, files, copy, text)

    def add_local_python_source(self, *modules: str, copy: bool = False,
                                ignore: IgnoreSpec | None = None) -> Image:
        """Make local Python packages or modules importable in containers, by name.

        Each goes under ``PYTHON_SOURCE_ROOT`` ("/root/.nbmodal-python-source"),
        which the image adds to ``PYTHONPATH``. By default only ``.py`` files
        are taken; dot-prefixed files and directories and ``__pycache__`` are
        always left out. ``ignore`` (patterns or a function, as in
        ``add_local_dir``) replaces the ``.py``-only rule.

        Example::

            image = Image.debian_slim().add_local_python_source("mylib", "helpers")
        """
        image = self
        for module in modules:
            if not isinstance(module, str) or not re.match(r"^[A-Za-z_]\w*$", module):
                raise ImageDefinitionError(
                    f"add_local_python_source: {module!r}; expected a top-level module name like 'mylib'")
            text = f"add_local_python_source({module!r}" + (", copy=True)" if copy else ")")
            # One directory holds them all, so the agent binds (or copies) a single tree.
            image = image._add_files(PYTHON_SOURCE_ROOT, _python_source_files(module, ignore), copy, text)
        return image._with_python_source_path()

    def copy_local_file(self, local_path: str | os.PathLike, remote_path: str | PurePosixPath = "./") -> Image:
        """Modal's deprecated spelling of ``add_local_file(..., copy=True)``."""
        warnings.warn("Image.copy_local_file is deprecated, as in Modal: use add_local_file(..., copy=True)",
                      DeprecationError, stacklevel=2)
        return self.add_local_file(local_path, _relative_to_root(remote_path), copy=True)

    def copy_local_dir(self, local_path: str | os.PathLike, remote_path: str | PurePosixPath = ".",
                       ignore: IgnoreSpec = ()) -> Image:
        """Modal's deprecated spelling of ``add_local_dir(..., copy=True)``."""
        warnings.warn("Image.copy_local_dir is deprecated, as in Modal: use add_local_dir(..., copy=True)",
                      DeprecationError, stacklevel=2)
        return self.add_local_dir(local_path, _relative_to_root(remote_path), copy=True, ignore=ignore)

    # -- Modal's methods that mean nothing here, or aren't built yet ----------------

    def entrypoint(self, entrypoint_commands: list[str]) -> Image:
        """Accepted for Modal code; a container here runs nbmodal's worker, never an image entrypoint."""
        warn_no_effect("Image.entrypoint()", "a container runs nbmodal's worker, not an entrypoint")
        return self._derive()

    def shell(self, shell_commands: list[str]) -> Image:
        """Accepted for Modal code; ``run_commands`` steps run with ``sh -c`` here."""
        warn_no_effect("Image.shell()", "run_commands steps run with sh -c")
        return self._derive()

    def cmd(self, cmd: list[str]) -> Image:
        """Accepted for Modal code; a container here runs nbmodal's worker, never an image command."""
        warn_no_effect("Image.cmd()", "a container runs nbmodal's worker, not an image command")
        return self._derive()

    def hydrate(self, client: Any = None) -> Image:
        """Accepted for Modal code: an image is built on its host when a run first needs it."""
        return self

    @staticmethod
    def from_id(image_id: str, client: Any = None) -> Image:
        """Modal's images by id; not available (images here are definitions built per host)."""
        raise not_available("Image.from_id()", "keep the Image definition and reuse it")

    @staticmethod
    def from_registry(tag: str, *args: Any, **kwargs: Any) -> Image:
        """Container images from a registry; not available yet: containers are processes on the host."""
        raise not_available("Image.from_registry()", _NO_CONTAINER_IMAGES)

    @staticmethod
    def from_dockerfile(path: str | os.PathLike, *args: Any, **kwargs: Any) -> Image:
        """Images from a Dockerfile; not available yet: containers are processes on the host."""
        raise not_available("Image.from_dockerfile()", _NO_CONTAINER_IMAGES)

    @staticmethod
    def from_aws_ecr(tag: str, *args: Any, **kwargs: Any) -> Image:
        """Container images from AWS ECR; not available yet: containers are processes on the host."""
        raise not_available("Image.from_aws_ecr()", _NO_CONTAINER_IMAGES)

    @staticmethod
    def from_gcp_artifact_registry(tag: str, *args: Any, **kwargs: Any) -> Image:
        """Container images from GCP Artifact Registry; not available yet: containers are processes on the host."""
        raise not_available("Image.from_gcp_artifact_registry()", _NO_CONTAINER_IMAGES)

    @staticmethod
    def micromamba(python_version: str | None = None, force_build: bool = False) -> Image:
        """A micromamba base image; not available yet (Conda environments aren't built here)."""
        raise not_available("Image.micromamba()", "use Image.debian_slim().pip_install(...)")

    def micromamba_install(self, *packages: str | Sequence[str], **kwargs: Any) -> Image:
        """Conda packages with micromamba; not available yet."""
        raise not_available("Image.micromamba_install()", "use pip_install, or apt_install for system libraries")

    def dockerfile_commands(self, *dockerfile_commands: str | Sequence[str], **kwargs: Any) -> Image:
        """Dockerfile instructions; not available yet: use run_commands, env, workdir and add_local_*."""
        raise not_available("Image.dockerfile_commands()", "use run_commands, env, workdir and add_local_*")

    def poetry_install_from_file(self, poetry_pyproject_toml: str, *args: Any, **kwargs: Any) -> Image:
        """Poetry dependencies; not available yet: ``pip_install_from_pyproject`` reads PEP 621 dependencies."""
        raise not_available("Image.poetry_install_from_file()", "use pip_install_from_pyproject")

    def pip_install_private_repos(self, *repositories: str, git_user: str, **kwargs: Any) -> Image:
        """Packages from private git repositories (with a Secret's token); not available yet (nor are Secrets)."""
        raise not_available("Image.pip_install_private_repos()",
                            "pip_install('git+ssh://...') uses the host's own git credentials")

    def _add_files(self, remote_path: str, files: Mapping[str, Path], copy: bool, text: str) -> Image:
        """A step (copy=True) or a mount (copy=False) holding ``files`` (relative path -> local path)."""
        entries, by_hash = [], {}
        for rel, local in sorted(files.items()):
            digest, size, mode = _hash_file(local)
            entries.append(pb.LocalFile(path=rel, sha256=digest, size=size, mode=mode))
            by_hash[digest] = local
        if copy:
            step = pb.ImageStep(kind="add_local", files=entries, remote_path=remote_path, text=text)
            return self._derive(step, files=by_hash)
        return self._derive(mount=pb.LocalMount(remote_path=remote_path, files=entries), mount_text=text,
                            files=by_hash)

    def _relabeled(self, before: Image | None, text: str) -> Image:
        """This image with what it added to ``before`` (None: everything) described as ``text`` (a %%image line)."""
        image = self._derive()
        first = len(before._steps) if before is not None else 0
        image._steps = self._steps[:first] + tuple(
            pb.ImageStep(kind=s.kind, args=s.args, options=s.options, files=s.files, remote_path=s.remote_path,
                         payload=s.payload, text=text) for s in self._steps[first:])
        known = {part for parts in before._mount_texts for part in parts} if before is not None else set()
        image._mount_texts = tuple(tuple(dict.fromkeys(p if p in known else text for p in parts))
                                   for parts in self._mount_texts)
        return image

    def _with_python_source_path(self) -> Image:
        """Adds PYTHON_SOURCE_ROOT to PYTHONPATH (keeping a PYTHONPATH an earlier env step set)."""
        current = ""
        for step in reversed(self._steps):
            if step.kind == "env" and "PYTHONPATH" in step.options:
                current = step.options["PYTHONPATH"]
                break
        if PYTHON_SOURCE_ROOT in current.split(":"):
            return self
        value = PYTHON_SOURCE_ROOT + (f":{current}" if current else "")
        return self._derive(pb.ImageStep(kind="env", options={"PYTHONPATH": value},
                                         text=f"env PYTHONPATH={value} (add_local_python_source)"))

    # -- imports -------------------------------------------------------------------

    def imports(self) -> contextlib.AbstractContextManager[None]:
        """``with image.imports(): import torch``: imports that may exist only remotely.

        An ``ImportError`` in the block is suppressed here, and the block's
        import statements are recorded *on this image* (each container runs
        them first, and their modules are preloaded), so use the image you
        pass to your functions. The block must be in a file or a notebook
        cell, whose source is read to find the statements.

        Example::

            with image.imports():
                import torch
                from transformers import AutoModel
        """
        frame = sys._getframe(1)
        try:
            statements = _imports_in_with_block(frame)
        finally:
            del frame  # no reference cycle through the caller's frame
        for stmt in statements:
            text = ast.unparse(stmt)
            if text not in self._imports:
                self._imports.append(text)
            for module in _imported_modules(stmt):
                if module not in self._import_modules:
                    self._import_modules.append(module)
        return _SuppressImportError()

    # -- output --------------------------------------------------------------------

    @property
    def steps(self) -> tuple[pb.ImageStep, ...]:
        """The build steps (copies), the python step first."""
        return tuple(_copy(step) for step in self._steps)

    @property
    def force_build(self) -> bool:
        return self._force_build

    def to_spec(self, name: str = "") -> pb.ImageSpec:
        """The wire definition the agent builds; ``name`` overrides ``self.name``."""
        preload = list(dict.fromkeys(self._preload + tuple(self._import_modules)))
        return pb.ImageSpec(name=name or self.name, steps=self._steps, preload=preload,
                            imports="\n".join(self._imports), force_build=self._force_build)

    def local_mounts(self) -> list[pb.LocalMount]:
        """The ``copy=False`` files, put in place at container start."""
        return [_copy(mount) for mount in self._mounts]

    def local_files(self) -> dict[str, Path]:
        """sha256 -> local path of every file the image needs uploaded (copied steps and mounts)."""
        return dict(self._files)

    def __repr__(self) -> str:
        lines = [f"Image({self.name!r}" if self.name else "Image("]
        lines += [f"  {i}. {step.text}" for i, step in enumerate(self._steps, 1)]
        lines += [f"  mount {m.remote_path} ({len(m.files)} files): {'; '.join(texts)}"
                  for m, texts in zip(self._mounts, self._mount_texts)]
        if self._preload or self._import_modules:
            lines.append(f"  preload: {', '.join(dict.fromkeys(self._preload + tuple(self._import_modules)))}")
        if self._imports:
            lines.append(f"  imports: {'; '.join(self._imports)}")
        return "\n".join(lines) + ")"


def __getattr__(name: str) -> Any:
    # parse_image_cell lives in image_cell (which imports Image); importable from here too, lazily.
    if name == "parse_image_cell":
        from nbmodal.image_cell import parse_image_cell
        return parse_image_cell
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NO_CONTAINER_IMAGES = ("containers here are processes on the host, in a Python environment built from "
                        "Image.debian_slim() steps")


def _build_step_extras(method: str, secrets: Sequence[Any], gpu: Any) -> tuple[tuple[pb.SecretSource, ...], str]:
    """Modal's ``secrets=`` and ``gpu=`` of a build step: the secrets' wire form and how the step's text names
    them (where they come from and their keys, never values); a build step runs on its host as it is, with
    the host's GPUs visible (there is no separate build machine to ask for)."""
    from nbmodal.secret import merged, secret_sources

    sources = secret_sources(secrets, f"Image.{method}")
    if gpu is not None:
        warn_no_effect(f"Image.{method}(gpu=...)", "a build step runs on its host, which has the GPUs it has")
    return sources, ", ".join(secret.describe() for secret in merged(secrets))


def _with_secrets(step: pb.ImageStep, secrets: tuple[tuple[pb.SecretSource, ...], str]) -> pb.ImageStep:
    """The step with its ``secrets=``: values for the build only; the layer's key and the text have no values."""
    sources, described = secrets
    if sources:
        step.secrets.extend(sources)
        step.text += f"  (secrets: {described})"
    return step


def _relative_to_root(remote_path: str | PurePosixPath) -> str:
    # Modal's copy_local_* default to the container's working directory, "/root" on debian_slim images.
    text = str(remote_path)
    return text if text.startswith("/") else str(PurePosixPath("/root") / text) + ("/" if text.endswith("/") else "")


# -- mounts ------------------------------------------------------------------------


def _add_mount(mounts: tuple[pb.LocalMount, ...], texts: tuple[tuple[str, ...], ...], new: pb.LocalMount,
               text: str) -> tuple[tuple[pb.LocalMount, ...], tuple[tuple[str, ...], ...]]:
    """``mounts`` with ``new`` added, keeping mounts disjoint.

    The agent binds each mount's directory at its remote_path, so a mount
    inside (or at) another's path would hide it: instead the files join the
    enclosing mount, and a later file at the same path replaces the earlier.
    """
    path = PurePosixPath(new.remote_path)
    for i, mount in enumerate(mounts):
        outer = PurePosixPath(mount.remote_path)
        if path == outer or outer in path.parents:
            merged = _merge_files(mount.files, new.files, path.relative_to(outer))
            return (mounts[:i] + (pb.LocalMount(remote_path=mount.remote_path, files=merged),) + mounts[i + 1:],
                    texts[:i] + (texts[i] + (text,),) + texts[i + 1:])
    # Mounts inside the new one fold into it (the new one's files win).
    files: list[pb.LocalFile] = []
    kept: list[pb.LocalMount] = []
    kept_texts: list[tuple[str, ...]] = []
    folded_texts: list[str] = []
    for mount, parts in zip(mounts, texts):
        inner = PurePosixPath(mount.remote_path)
        if path in inner.parents:
            files = _merge_files(files, mount.files, inner.relative_to(path))
            folded_texts += parts
        else:
            kept.append(mount)
            kept_texts.append(parts)
    files = _merge_files(files, new.files, PurePosixPath("."))
    return (tuple(kept) + (pb.LocalMount(remote_path=new.remote_path, files=files),),
            tuple(kept_texts) + (tuple(folded_texts) + (text,),))


def _merge_files(old: Iterable[pb.LocalFile], new: Iterable[pb.LocalFile], prefix: PurePosixPath) -> list[pb.LocalFile]:
    """``old`` plus ``new`` (paths under ``prefix``), sorted by path; ``new`` wins a shared path."""
    merged = {f.path: f for f in old}
    for f in new:
        path = (prefix / f.path).as_posix()
        merged[path] = pb.LocalFile(path=path, sha256=f.sha256, size=f.size, mode=f.mode)
    return [merged[p] for p in sorted(merged)]


# -- argument checks ---------------------------------------------------------------


def _string_list(method: str, what: str, values: Iterable[Any]) -> list[str]:
    """Flattens one level of lists, as Modal accepts ``pip_install(["a", "b"], "c")``."""
    result = []
    for value in values:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise ImageDefinitionError(f"{method}: {what} {item!r}; expected a non-empty string")
            result.append(item.strip())
    return result


def _package_list(method: str, packages: Iterable[Any]) -> list[str]:
    return _string_list(method, "package", packages)


def _pip_options(method: str, index_url: str | None, extra_index_url: str | None, find_links: str | None,
                 pre: bool, extra_options: str) -> dict[str, str]:
    options = {}
    for key, value in (("index_url", index_url), ("extra_index_url", extra_index_url)):
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise ImageDefinitionError(f"{method}: {key}={value!r}; expected a URL string")
            options[key] = value.strip()
    if find_links is not None:
        options["find_links"] = _find_links(method, find_links)
    if pre:
        options["pre"] = "1"
    if not isinstance(extra_options, str):
        raise ImageDefinitionError(f"{method}: extra_options={extra_options!r}; expected a string of pip options")
    if extra_options.strip():
        options["extra_options"] = extra_options.strip()
    return options


def _find_links(method: str, value: Any) -> str:
    """A URL as given; a local directory as its absolute path (meaningful to an agent on this machine)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ImageDefinitionError(f"{method}: find_links={value!r}; expected a URL or a directory path")
    text = str(value).strip()
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    if path.is_absolute():
        return text  # may exist on the agent's host
    raise ImageDefinitionError(
        f"{method}: find_links={text!r} is not a URL and not a directory here (cwd {os.getcwd()!r}); "
        "expected a URL, a local directory, or an absolute path on the agent's host")


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that differ from their defaults, for a step's text."""
    return {k: v for k, v in kwargs.items() if v not in (None, False, "")}


def _call_text(method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{method}({', '.join(parts)})"


def _local_path(method: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ImageDefinitionError(f"{method}: local_path={value!r}; expected a local path")
    return Path(value).expanduser().absolute()


def _remote_path(method: str, arg: str, value: Any) -> str:
    if not isinstance(value, (str, PurePosixPath)) or not str(value).startswith("/"):
        raise ImageDefinitionError(f"{method}: {arg}={value!r}; expected an absolute path like '/app'")
    return str(PurePosixPath(str(value)))


def _pyproject_dependencies(path: Path, groups: list[str]) -> list[str]:
    where = f"{str(path)!r} (cwd {os.getcwd()!r})"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImageDefinitionError(
            f"pip_install_from_pyproject: can't read {where}: {exc.strerror or exc}; "
            "expected the path of a pyproject.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ImageDefinitionError(f"pip_install_from_pyproject: {where} is not valid TOML: {exc}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise ImageDefinitionError(
            f"pip_install_from_pyproject: {where} has no [project] table; expected PEP 621 metadata")
    if "dependencies" in project.get("dynamic", ()):
        raise ImageDefinitionError(
            f"pip_install_from_pyproject: {where} declares its dependencies dynamic; expected a static list")
    packages = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for group in groups:
        if group not in optional:
            known = ", ".join(sorted(optional)) or "none"
            raise ImageDefinitionError(
                f"pip_install_from_pyproject: optional_dependencies group {group!r} is not in {where}; "
                f"its groups: {known}")
        packages += optional[group]
    return list(dict.fromkeys(packages))


# -- local files -------------------------------------------------------------------

# (path, size, mtime, inode) -> sha256, so re-running a cell doesn't rehash unchanged files.
_hash_cache: dict[tuple[str, int, int, int], str] = {}


def _hash_file(path: Path) -> tuple[str, int, int]:
    """(sha256 hex, size, permission bits) of a file's content."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _hash_cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _hash_cache[key] = h.hexdigest()
    return digest, st.st_size, st.st_mode & 0o7777


def _ignore_predicate(method: str, ignore: IgnoreSpec) -> Callable[[PurePosixPath], bool]:
    if callable(ignore):
        def predicate(rel: PurePosixPath) -> bool:
            return bool(ignore(Path(rel)))

        # An inverted FilePatternMatcher "ignores" a directory whose files it keeps: walk into it anyway.
        predicate.can_prune = getattr(ignore, "can_prune_directories", lambda: True)()  # type: ignore[attr-defined]
        return predicate
    if isinstance(ignore, str) or not all(isinstance(p, str) for p in ignore):
        raise ImageDefinitionError(
            f"{method}: ignore={ignore!r}; expected a list of glob patterns like ['*.pyc', '.git'] or a function")
    return _pattern_matcher(list(ignore))


def _pattern_matcher(patterns: list[str]) -> Callable[[PurePosixPath], bool]:
    # "**/x" means x at any depth; a trailing "/" (dockerignore's directory form) changes nothing here.
    cleaned = [p.rstrip("/").removeprefix("**/") for p in patterns if p.strip("/")]

    def ignored(rel: PurePosixPath) -> bool:
        candidates = [rel.as_posix(), *rel.parts]
        return any(fnmatch.fnmatchcase(c, p) for p in cleaned for c in candidates)
    return ignored


def _collect_dir(root: Path, ignored: Callable[[PurePosixPath], bool]) -> dict[str, Path]:
    """Relative posix path -> local path of every file under ``root`` that isn't ignored."""
    files = {}
    prune = getattr(ignored, "can_prune", True)
    for dirpath, dirnames, filenames in os.walk(root):
        base = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        # Prune ignored directories so a skipped .git or venv is never walked.
        dirnames[:] = sorted(d for d in dirnames if not (prune and ignored(base / d)))
        for name in sorted(filenames):
            rel = base / name
            path = Path(dirpath, name)
            if ignored(rel):
                continue
            if not path.is_file():
                log.warning("skipping %s: not a regular file (a broken link?)", path)
                continue
            files[rel.as_posix()] = path
    return files


def _python_source_predicate(ignore: IgnoreSpec | None) -> Callable[[PurePosixPath], bool]:
    """Dot-prefixed entries and caches are always skipped; then ``ignore`` (files and directories)."""
    user = _ignore_predicate("add_local_python_source", ignore) if ignore is not None else None

    def skipped(rel: PurePosixPath) -> bool:
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or rel.suffix == ".pyc":
            return True
        return user is not None and user(rel)
    return skipped


def _python_source_files(module: str, ignore: IgnoreSpec | None) -> dict[str, Path]:
    """Path under PYTHON_SOURCE_ROOT -> local path, for a local package or single-file module."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ImageDefinitionError(f"add_local_python_source: can't find module {module!r}: {exc}") from None
    if spec is None:
        raise ImageDefinitionError(
            f"add_local_python_source: no module {module!r} on this kernel's sys.path; expected an importable name")
    if spec.submodule_search_locations:  # a package (a namespace package may have several directories)
        skipped = _python_source_predicate(ignore)
        files: dict[str, Path] = {}
        for location in spec.submodule_search_locations:
            for rel, path in _collect_dir(Path(location), skipped).items():
                if ignore is not None or path.suffix == ".py":  # only .py files unless ignore says otherwise
                    files.setdefault(f"{module}/{rel}", path)
        return files
    origin = Path(spec.origin) if spec.origin and spec.has_location else None
    if origin is None or not origin.is_file() or origin.suffix != ".py":
        raise ImageDefinitionError(
            f"add_local_python_source: {module!r} is not a Python source file ({spec.origin}); "
            "expected a local package or .py module")
    return {origin.name: origin}


# -- image.imports() ---------------------------------------------------------------


class _SuppressImportError(contextlib.AbstractContextManager):
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc_type is not None and issubclass(exc_type, ImportError):
            log.debug("image.imports(): not importable here: %s", exc)
            return True
        return False


def _imports_in_with_block(frame: FrameType) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of the ``with ....imports():`` block calling from ``frame``."""
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    where = f"{filename}, line {lineno}"
    lines = linecache.getlines(filename, frame.f_globals)  # IPython registers cell sources here
    if not lines:
        try:
            lines, _ = inspect.findsource(frame)
        except (OSError, TypeError):
            lines = []
    if not lines:
        raise ImageDefinitionError(
            f"image.imports(): can't read the source at {where}; put the `with image.imports():` block "
            "in a file or a notebook cell")
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError as exc:
        raise ImageDefinitionError(f"image.imports(): can't parse the source at {where}: {exc}") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "imports" and call.lineno <= lineno <= (call.end_lineno or lineno)):
                    return [stmt for stmt in node.body if isinstance(stmt, (ast.Import, ast.ImportFrom))]
    raise ImageDefinitionError(
        f"image.imports() at {where} is not the head of a with statement; expected `with image.imports():`")


def _imported_modules(stmt: ast.Import | ast.ImportFrom) -> list[str]:
    """Top-level module names a statement imports (relative imports have none we can preload)."""
    if isinstance(stmt, ast.Import):
        return [alias.name.split(".")[0] for alias in stmt.names]
    if stmt.level == 0 and stmt.module:
        return [stmt.module.split(".")[0]]
    return []


def _copy(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy

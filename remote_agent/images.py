"""Building images on the host: a virtual environment per image, in layers cached by content.

An image is a list of steps (``nbmodal_wire/proto/agent.proto``: ImageStep).
Step *i* is a layer keyed by the hash of its definition and inputs chained to
the key of the layer below, so a changed step rebuilds from there on and an
unchanged image builds nothing. A layer is a directory ``layers/<key>/`` that
holds ``venv/`` (made by ``uv``) and ``files/`` (what ``add_local_*(copy=True)``
put at container paths, as ``files/<absolute path>``). A new layer starts as a
hard-linked copy of the one below (as cheap as uv's own installs, which are
hard links into its cache) and the installers replace files rather than edit
them, so lower layers stay intact. Steps that only change configuration
(``env``, ``workdir``) make no directory: the record of the built image
carries them.

A layer is marked complete only when its step succeeded; a failed step's
directory is removed, so nothing half-built is ever used. Two clients asking
for the same image share one build and both see its whole log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from nbmodal_wire import pb
from remote_agent.redaction import Redactor
from remote_agent.request_errors import CONFLICT, NOT_FOUND, RequestError
from remote_agent.secrets import SecretError, SecretStore

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")

KEY_VERSION = b"nbmodal-image-v1"
CONFIG_ONLY_STEPS = {"env", "workdir"}
STEP_KINDS = {"python", "pip", "requirements", "run", "env", "workdir", "apt", "add_local", "run_function"}
# What the container's worker needs from the agent's own environment.
RUNTIME_PACKAGES = ("grpcio", "protobuf", "cloudpickle")
_COMPLETE = ".complete"


# What an image id may look like (they are 32 hex digits: image_key); anything else is refused before it is a path.
_IMAGE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class ImageError(RequestError):
    """A build that failed, or an image definition or request the agent can't serve."""


class ImageNotFound(ImageError):
    """An image, build log or definition that isn't on this agent."""

    code = NOT_FOUND


class ImageBusy(ImageError):
    """An image that can't be changed now (it is being built)."""

    code = CONFLICT


@dataclass
class BuiltImage:
    """The record of a built image: what a container of it needs."""

    image_id: str           # its last layer's key with its preloads and imports (image_key)
    name: str
    layer_dir: str          # the last layer with files (its venv is the image's)
    python: str             # "3.11"
    env: dict[str, str]
    workdir: str
    paths: list[str]        # container paths that hold image files (add_local with copy)
    preload: list[str]
    imports: str
    size_bytes: int = 0
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    steps: int = 0
    built_steps: int = 0
    build_s: float = 0.0
    log_path: str = ""

    @property
    def python_executable(self) -> str:
        return str(Path(self.layer_dir) / "venv" / "bin" / "python")

    def host_path(self, container_path: str) -> Path:
        return Path(self.layer_dir) / "files" / container_path.lstrip("/")

    def info(self, state: pb.ImageState = pb.IMAGE_READY, error: str = "") -> pb.ImageInfo:
        return pb.ImageInfo(image_id=self.image_id, name=self.name, state=state, size_bytes=self.size_bytes,
                            created=self.created, last_used=self.last_used, python=self.python, steps=self.steps,
                            built_steps=self.built_steps, log_path=self.log_path, error=error, build_s=self.build_s)


def layer_keys(spec: pb.ImageSpec) -> list[str]:
    """The key of each step's layer: its definition (not how it was written) chained to the one below."""
    keys, below = [], hashlib.sha256(KEY_VERSION).hexdigest()
    for step in spec.steps:
        definition = pb.ImageStep()
        definition.CopyFrom(step)
        definition.text = ""
        for secret in definition.secrets:  # a secret's name and keys make the layer, never its values
            secret.values.update({key: "" for key in secret.values})
        if definition.kind == "python" and not (definition.args and definition.args[0]):
            # The host's own Python: the image changes when the agent's interpreter does.
            definition.options["host_python"] = f"{sys.executable} {sys.version}"
        digest = hashlib.sha256(below.encode() + definition.SerializeToString(deterministic=True))
        below = digest.hexdigest()[:32]
        keys.append(below)
    return keys


def image_key(spec: pb.ImageSpec, keys: list[str]) -> str:
    """The image's id: its last layer, and what its containers do at start (preloads, imports)."""
    start = "\0".join([*spec.preload, spec.imports]).encode()
    return hashlib.sha256(keys[-1].encode() + b"\0" + start).hexdigest()[:32]


def check_spec(spec: pb.ImageSpec) -> None:
    if not spec.steps or spec.steps[0].kind != "python":
        raise ImageError("an image starts with its Python (Image.debian_slim(), or `python 3.11` in %%image)")
    for number, step in enumerate(spec.steps, 1):
        if step.kind not in STEP_KINDS:
            raise ImageError(f"step {number} ({step.text or step.kind}): unknown kind {step.kind!r}; this agent "
                             f"knows {', '.join(sorted(STEP_KINDS))}")
        if step.kind == "python" and number > 1:
            raise ImageError(f"step {number} ({step.text}): the Python can only be chosen by the first step")


def runtime_sources() -> list[Path]:
    """Our package dirs a container imports: remote_agent, nbmodal_wire, and nbmodal where it is installed
    (for Dict, Queue...)."""
    import importlib.util

    import nbmodal_wire

    sources = [Path(__file__).resolve().parent, Path(nbmodal_wire.__file__).resolve().parent]
    spec = importlib.util.find_spec("nbmodal")  # found without importing it: the agent never imports nbmodal
    if spec is not None and spec.origin:
        sources.append(Path(spec.origin).resolve().parent)
    return sources


def find_uv() -> str:
    """The uv executable next to the agent's Python, or on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return found
    raise ImageError(f"building images needs uv, which isn't installed for the agent's Python ({sys.executable}); "
                     f"install it with `{sys.executable} -m pip install uv`")


class _Build:
    """One build in progress: its events so far, for every client that follows it."""

    def __init__(self) -> None:
        self.events: list[pb.BuildEvent] = []
        self.done = False
        self._changed = asyncio.Condition()

    async def emit(self, event: pb.BuildEvent) -> None:
        async with self._changed:
            self.events.append(event)
            if event.HasField("built") or event.HasField("failed"):
                self.done = True
            self._changed.notify_all()

    async def follow(self) -> AsyncIterator[pb.BuildEvent]:
        seen = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.events) > seen)  # noqa: B023 - awaited here, in this turn
                fresh = self.events[seen:]
            seen += len(fresh)
            for event in fresh:
                yield event
            if fresh and (fresh[-1].HasField("built") or fresh[-1].HasField("failed")):
                return


class ImageStore:
    """The images of one agent: layers, built-image records, local files by content, build logs."""

    def __init__(self, root: Path, runtime_sources: list[Path]) -> None:
        self.root = root
        self.layers = root / "layers"
        self.records = root / "built"
        self.files = root / "files"
        self.logs = root / "logs"
        self.runtime_root = root / "runtime"
        self.mounts = root / "mounts"
        for directory in (self.layers, self.records, self.files, self.logs, self.runtime_root, self.mounts):
            directory.mkdir(parents=True, exist_ok=True)
        self.runtime_sources = runtime_sources  # the remote_agent (and nbmodal) package dirs
        self._builds: dict[str, _Build] = {}
        self._build_names: dict[str, str] = {}
        self._failures: dict[str, pb.BuildFailure] = {}
        self._specs: dict[str, pb.ImageSpec] = {}  # the definitions asked for, for rebuilds
        self._rebuilds: set[asyncio.Task] = set()
        self.secrets: SecretStore | None = None  # named secrets of build steps (the agent's)
        self._remove_incomplete_layers()

    # -- lookups -------------------------------------------------------------

    def get(self, image_id: str) -> BuiltImage:
        if not _IMAGE_ID.fullmatch(image_id):  # never a path: no '/', '..', NUL or a name too long for one
            raise ImageNotFound(f"{image_id[:80]!r} is not an image id (`nbmodal image list` shows them)")
        path = self.records / f"{image_id}.json"
        try:
            return BuiltImage(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise ImageNotFound(f"image {image_id} isn't built on this agent (it may have been removed); "
                                f"run the cell again to rebuild it") from None

    def touch(self, image: BuiltImage) -> None:
        image.last_used = time.time()
        self._save(image)

    def list_images(self) -> list[pb.ImageInfo]:
        infos = []
        for path in sorted(self.records.glob("*.json")):
            try:
                infos.append(BuiltImage(**json.loads(path.read_text())).info())
            except (OSError, ValueError, TypeError):
                log.warning("unreadable image record %s", path)
        for key, build in self._builds.items():
            if not build.done:
                infos.append(pb.ImageInfo(image_id=key, name=self._build_names.get(key, ""), state=pb.IMAGE_BUILDING,
                                          log_path=str(self.logs / f"{key}.log")))
        for key, failure in self._failures.items():
            infos.append(pb.ImageInfo(image_id=key, name=self._build_names.get(key, ""), state=pb.IMAGE_FAILED,
                                      error=f"step {failure.step} ({failure.text}): {failure.message}",
                                      log_path=str(self.logs / f"{key}.log")))
        return infos

    def check_not_building(self, name_or_id: str) -> None:
        """Refuse to remove an image while it builds (its build would bring it back). On the event loop."""
        for key, build in self._builds.items():
            if not build.done and name_or_id in (key, self._build_names.get(key)):
                raise ImageBusy(f"image {name_or_id} is being built; remove it once its build has ended")

    def remove(self, name_or_id: str) -> list[str]:
        """Forget the built images with this name or id; layers no image uses any more are deleted."""
        removed = []
        for path in self.records.glob("*.json"):
            record = json.loads(path.read_text())
            if name_or_id in (record["image_id"], record["name"]):
                path.unlink()
                removed.append(record["image_id"])
        if removed:
            self._collect_garbage()
        return removed

    def build_log(self, image_id: str) -> str:
        try:
            return (self.logs / f"{image_id}.log").read_text(errors="replace")
        except FileNotFoundError:
            raise ImageNotFound(f"no build log for image {image_id} on this agent") from None

    def rebuild(self, image_id: str) -> None:
        """Build an image again from its definition, every step, in the background."""
        spec = self._specs.get(image_id)
        if spec is None:
            raise ImageNotFound(f"image {image_id} wasn't asked for since this agent started; run its cell "
                                f"again to rebuild it")
        forced = pb.ImageSpec()
        forced.CopyFrom(spec)
        forced.force_build = True

        async def drain() -> None:
            async for _ in self.build(forced):
                pass

        task = asyncio.get_running_loop().create_task(drain(), name=f"rebuild-{image_id}")
        self._rebuilds.add(task)
        task.add_done_callback(self._rebuilds.discard)

    def missing_files(self, sha256s: list[str]) -> list[str]:
        return [digest for digest in sha256s if not self.file_path(digest).exists()]

    def file_path(self, sha256: str) -> Path:
        """Where the file with this content is kept; the digest names a file, so it must be one (fuzzing sent
        10 KiB "digests", which failed as 'File name too long')."""
        if not _SHA256.fullmatch(sha256):
            raise RequestError(f"{sha256[:80]!r}{'...' if len(sha256) > 80 else ''} is not a SHA-256 digest "
                               "(64 lowercase hex digits) of an image file")
        return self.files / sha256

    async def receive_file(self, chunks: AsyncIterator[bytes],
                           in_io_thread: Callable[..., Awaitable[Any]]) -> tuple[str, int]:
        """Keep a local file a client sends for ``add_local_*`` under its SHA-256; returns (sha256, size).

        The file is written off the event loop (``in_io_thread``) and appears only once complete.
        """
        partial = self.files / f"upload-{secrets.token_hex(8)}.partial"
        digest, size = hashlib.sha256(), 0

        def write(f: BinaryIO, data: bytes) -> None:
            f.write(data)
            digest.update(data)

        try:
            with open(partial, "wb") as f:
                async for data in chunks:
                    await in_io_thread(write, f, data)
                    size += len(data)
            await in_io_thread(os.replace, partial, self.file_path(digest.hexdigest()))
        finally:
            partial.unlink(missing_ok=True)
        return digest.hexdigest(), size

    # -- building ------------------------------------------------------------

    async def build(self, spec: pb.ImageSpec) -> AsyncIterator[pb.BuildEvent]:
        """Build the image (or find it built) and yield its build's events; the last is built or failed."""
        check_spec(spec)
        keys = layer_keys(spec)
        image_id = image_key(spec, keys)
        self._specs[image_id] = spec
        record = self.records / f"{image_id}.json"
        running = self._builds.get(image_id)
        if record.exists() and not spec.force_build and (running is None or running.done):
            image = self.get(image_id)
            self.touch(image)
            found = image.info()
            found.built_steps, found.build_s = 0, 0.0  # nothing built this time
            yield pb.BuildEvent(built=found)
            return
        build = running
        if build is None or build.done:
            build = self._builds[image_id] = _Build()
            self._build_names[image_id] = spec.name
            self._failures.pop(image_id, None)
            task = asyncio.create_task(self._run_build(spec, keys, build), name=f"build-{image_id}")
            task.add_done_callback(lambda t: _log_crash(t, image_id))
        async for event in build.follow():
            yield event

    async def _run_build(self, spec: pb.ImageSpec, keys: list[str], build: _Build) -> None:
        image_id = image_key(spec, keys)
        log_path = self.logs / f"{image_id}.log"
        started = time.monotonic()
        state = _BuildState(env={}, workdir="", paths=[], layer_dir=None, python="")
        built_steps = 0
        with open(log_path, "w", encoding="utf-8") as log_file:
            for number, (step, key) in enumerate(zip(spec.steps, keys), 1):
                text = step.text or step.kind
                cached = self._is_complete(key) and not spec.force_build
                await build.emit(pb.BuildEvent(progress=pb.BuildProgress(
                    step=number, steps=len(keys), text=text, cached=cached)))
                log_file.write(f"== step {number}/{len(keys)}: {text}{' (cached)' if cached else ''}\n")
                tail: deque[str] = deque(maxlen=40)
                redactor = Redactor(())
                try:
                    if cached:
                        self._replay(step, key, state)
                        continue
                    built_steps += 1
                    state.step_env = self._step_secrets(step)
                    redactor = Redactor(state.step_env.values())

                    async def output(line: str) -> None:
                        line = redactor.text(line)  # noqa: B023 - only called while this step builds
                        tail.append(line)  # noqa: B023
                        log_file.write(line)
                        await build.emit(pb.BuildEvent(log=line))

                    await self._build_step(step, key, state, output)
                except (ImageError, OSError) as exc:
                    self._discard(key)
                    message = redactor.text(str(exc))
                    log_file.write(f"== failed: {message}\n")
                    failure = pb.BuildFailure(step=number, text=text, message=message, log_tail="".join(tail))
                    self._failures[image_id] = failure
                    await build.emit(pb.BuildEvent(failed=failure))
                    return
        image = BuiltImage(
            image_id=image_id, name=spec.name, layer_dir=str(state.layer_dir), python=state.python, env=state.env,
            workdir=state.workdir, paths=state.paths, preload=list(spec.preload), imports=spec.imports,
            size_bytes=_tree_size(Path(str(state.layer_dir))), steps=len(keys), built_steps=built_steps,
            build_s=round(time.monotonic() - started, 3), log_path=str(log_path))
        self._save(image)
        log.info("image %s (%s) built: %d of %d steps in %.2f s", image_id, spec.name or "unnamed", built_steps,
                 len(keys), image.build_s)
        await build.emit(pb.BuildEvent(built=image.info()))

    def _step_secrets(self, step: pb.ImageStep) -> dict[str, str]:
        """The environment a step's ``secrets=`` give its commands (not the image's: they end with the step)."""
        if not step.secrets:
            return {}
        if self.secrets is None:
            raise ImageError("this agent keeps no secrets, so a step with secrets= can't be built here")
        try:
            return self.secrets.environment(step.secrets)
        except SecretError as exc:
            raise ImageError(str(exc)) from None

    def _replay(self, step: pb.ImageStep, key: str, state: _BuildState) -> None:
        """What a cached step contributes to the image's configuration."""
        self._configure(step, state)
        if step.kind not in CONFIG_ONLY_STEPS:
            state.layer_dir = self.layers / key
            state.python = (self.layers / key / "python-version").read_text().strip()
        if step.kind == "add_local" and step.remote_path not in state.paths:
            state.paths.append(step.remote_path)

    @staticmethod
    def _configure(step: pb.ImageStep, state: _BuildState) -> None:
        if step.kind == "env":
            state.env.update(step.options)
        elif step.kind == "workdir":
            state.workdir = step.remote_path

    async def _build_step(self, step: pb.ImageStep, key: str, state: _BuildState, output) -> None:
        self._configure(step, state)
        if step.kind in CONFIG_ONLY_STEPS:
            self._mark_complete(key)
            return
        layer = self.layers / key
        self._discard(key)
        if step.kind == "python":
            layer.mkdir()
            await self._make_venv(step, layer, output)
        else:
            assert state.layer_dir is not None, "check_spec makes the Python the first step, and it makes a layer"
            await self._copy_layer(state.layer_dir, layer)
            await getattr(self, f"_step_{step.kind}")(step, layer, state, output)
        state.layer_dir = layer
        state.python = (layer / "python-version").read_text().strip()
        self._mark_complete(key)

    # -- the steps -------------------------------------------------------------

    async def _make_venv(self, step: pb.ImageStep, layer: Path, output) -> None:
        python = step.args[0] if step.args and step.args[0] else sys.executable
        await _run([find_uv(), "venv", "--python", python, "--no-python-downloads", str(layer / "venv")],
                   output, env=_uv_env(), what=f"making a Python {python} environment")
        venv_python = layer / "venv" / "bin" / "python"
        version = (await _capture([str(venv_python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]))
        (layer / "python-version").write_text(version)
        (layer / "files").mkdir()
        runtime = await self._runtime_for(version, str(venv_python), output)
        site_packages = next((layer / "venv" / "lib").glob("python*/site-packages"))
        # Appended to sys.path after site-packages: the image's own packages win.
        (site_packages / "zz_nbmodal_runtime.pth").write_text(f"{runtime}\n")

    async def _step_pip(self, step: pb.ImageStep, layer: Path, state: _BuildState, output) -> None:
        await self._uv_pip_install(list(step.args), step.options, layer, state, output)

    async def _step_requirements(self, step: pb.ImageStep, layer: Path, state: _BuildState, output) -> None:
        requirements = layer / "requirements.txt"
        requirements.write_bytes(step.payload)
        try:
            await self._uv_pip_install(["-r", str(requirements)], step.options, layer, state, output)
        finally:
            requirements.unlink(missing_ok=True)

    async def _uv_pip_install(self, args: list[str], options, layer: Path, state: _BuildState, output) -> None:
        argv = [find_uv(), "pip", "install", "--python", str(layer / "venv" / "bin" / "python")]
        if options.get("index_url"):
            argv += ["--index-url", options["index_url"]]
        if options.get("extra_index_url"):
            argv += ["--extra-index-url", options["extra_index_url"]]
        if options.get("find_links"):
            argv += ["--find-links", options["find_links"]]
        if options.get("pre"):
            argv += ["--prerelease", "allow"]
        argv += shlex.split(options.get("extra_options", ""))
        await _run(argv + args, output, env=_uv_env({**state.env, **state.step_env}), what="installing packages")

    async def _step_run(self, step: pb.ImageStep, layer: Path, state: _BuildState, output) -> None:
        env = self._command_env(layer, state)
        cwd = self._build_cwd(layer, state)
        for command in step.args:
            await output(f"$ {command}\n")
            await _run(["/bin/sh", "-c", command], output, env=env, cwd=cwd, what=f"the command `{command}`")

    async def _step_apt(self, step: pb.ImageStep, layer: Path, state: _BuildState, output) -> None:
        if os.geteuid() == 0:
            prefix = []
        elif shutil.which("sudo") and (await _returncode(["sudo", "-n", "true"])) == 0:
            prefix = ["sudo", "-n"]
        else:
            raise ImageError(f"apt_install needs root or passwordless sudo on this host, and the agent runs as "
                             f"{_user()} without either; ask the host's admin to install {' '.join(step.args)}, "
                             f"or install them with pip or a `run` step into the image")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        await _run(prefix + ["apt-get", "install", "-y", "--no-install-recommends", *step.args], output, env=env,
                   what="apt-get install")

    async def _step_add_local(self, step: pb.ImageStep, layer: Path, state: _BuildState, output) -> None:
        target = layer / "files" / step.remote_path.lstrip("/")
        for file in step.files:
            destination = _inside(target, file.path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.unlink(missing_ok=True)
            shutil.copyfile(self.file_path(file.sha256), destination)
            os.chmod(destination, file.mode & 0o777 or 0o644)
        await output(f"added {len(step.files)} file(s) at {step.remote_path}\n")
        if step.remote_path not in state.paths:
            state.paths.append(step.remote_path)

    async def _step_run_function(self, step: pb.ImageStep, layer: Path, state: _BuildState, output) -> None:
        payload = layer / "function.pickle"
        payload.write_bytes(step.payload)
        code = ("import pickle, sys\n"
                "fn, args, kwargs = pickle.load(open(sys.argv[1], 'rb'))\n"
                "fn(*args, **kwargs)\n")
        try:
            await _run([str(layer / "venv" / "bin" / "python"), "-u", "-c", code, str(payload)], output,
                       env=self._command_env(layer, state), cwd=self._build_cwd(layer, state),
                       what="the function")
        finally:
            payload.unlink(missing_ok=True)

    # -- runtime, layers ---------------------------------------------------------

    async def _runtime_for(self, version: str, venv_python: str, output) -> Path:
        """A directory with what the container's worker imports: our sources and their dependencies."""
        runtime = self.runtime_root / f"py{version}"
        marker = runtime / _COMPLETE
        if marker.exists():
            return runtime
        shutil.rmtree(runtime, ignore_errors=True)
        runtime.mkdir(parents=True)
        for source in self.runtime_sources:
            (runtime / source.name).symlink_to(source)
        if version == "%d.%d" % sys.version_info[:2]:
            # The agent's own packages fit this Python: link them.
            for location in _runtime_package_dirs():
                if not (runtime / location.name).exists():
                    (runtime / location.name).symlink_to(location)
        else:
            await output(f"installing nbmodal's runtime for Python {version}\n")
            await _run([find_uv(), "pip", "install", "--python", venv_python, "--target", str(runtime),
                        *RUNTIME_PACKAGES], output, env=_uv_env(), what="installing nbmodal's runtime")
        marker.touch()
        return runtime

    async def _copy_layer(self, below: Path, layer: Path) -> None:
        # Hard links: a layer costs little, and installers replace files rather than edit them.
        await _run(["cp", "-al", str(below), str(layer)], _discard_output, what="copying the layer below")
        (layer / _COMPLETE).unlink(missing_ok=True)
        _relocate_venv(layer / "venv", str(below / "venv"), str(layer / "venv"))

    def _command_env(self, layer: Path, state: _BuildState) -> dict[str, str]:
        venv = layer / "venv"
        return {**os.environ, **state.env, **state.step_env, "VIRTUAL_ENV": str(venv),
                "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    @staticmethod
    def _build_cwd(layer: Path, state: _BuildState) -> str:
        cwd = layer / "files" / state.workdir.lstrip("/") if state.workdir else layer / "files"
        cwd.mkdir(parents=True, exist_ok=True)
        return str(cwd)

    def _is_complete(self, key: str) -> bool:
        return (self.layers / key / _COMPLETE).exists() or (self.layers / f"{key}{_COMPLETE}").exists()

    def _mark_complete(self, key: str) -> None:
        layer = self.layers / key
        (layer / _COMPLETE if layer.is_dir() else self.layers / f"{key}{_COMPLETE}").touch()

    def _discard(self, key: str) -> None:
        shutil.rmtree(self.layers / key, ignore_errors=True)
        (self.layers / f"{key}{_COMPLETE}").unlink(missing_ok=True)

    def _remove_incomplete_layers(self) -> None:
        for layer in self.layers.iterdir():
            if layer.is_dir() and not (layer / _COMPLETE).exists():
                log.info("removing the half-built layer %s", layer.name)
                shutil.rmtree(layer, ignore_errors=True)

    def _collect_garbage(self) -> None:
        used = {Path(json.loads(p.read_text())["layer_dir"]).name for p in self.records.glob("*.json")}
        for layer in self.layers.iterdir():
            if layer.is_dir() and layer.name not in used:
                shutil.rmtree(layer, ignore_errors=True)
            elif layer.name.endswith(_COMPLETE):
                layer.unlink()

    def _save(self, image: BuiltImage) -> None:
        path = self.records / f"{image.image_id}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(image.__dict__, indent=1))
        temporary.replace(path)

    # -- local files ---------------------------------------------------------------

    def local_mount_dir(self, mount: pb.LocalMount) -> Path:
        """A directory holding a LocalMount's files, made once per set of files (hard links to the store)."""
        manifest = hashlib.sha256(mount.SerializeToString(deterministic=True)).hexdigest()[:32]
        directory = self.mounts / manifest
        if (directory / _COMPLETE).exists():
            return directory / "root"
        shutil.rmtree(directory, ignore_errors=True)
        for file in mount.files:
            source = self.file_path(file.sha256)
            if not source.exists():
                raise ImageError(f"the local file {file.path} for {mount.remote_path} wasn't sent to this agent")
            destination = _inside(directory / "root", file.path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
            os.chmod(destination, file.mode & 0o777 or 0o644)
        (directory / "root").mkdir(parents=True, exist_ok=True)
        (directory / _COMPLETE).touch()
        return directory / "root"


@dataclass
class _BuildState:
    env: dict[str, str]
    workdir: str
    paths: list[str]
    layer_dir: Path | None
    python: str
    step_env: dict[str, str] = field(default_factory=dict)  # the current step's secrets


def _runtime_package_dirs() -> list[Path]:
    """The top-level modules of our runtime packages and everything they require, as the agent has them."""
    import importlib.metadata
    import re

    wanted, seen, tops = list(RUNTIME_PACKAGES), set(), {}
    while wanted:
        name = wanted.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                if (match := re.match(r"[A-Za-z0-9_.-]+", requirement)) is not None:
                    wanted.append(match.group(0))
        for file in dist.files or []:
            top = file.parts[0]
            if top == ".." or top.endswith((".dist-info", ".data")) or top == "__pycache__":
                continue
            tops[top] = Path(str(dist.locate_file(top)))
    return list(tops.values())


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not str(path).startswith(str(root.resolve()) + os.sep):
        raise ImageError(f"the file path {relative!r} leaves its directory")
    return path


def _relocate_venv(venv: Path, old: str, new: str) -> None:
    """Point a copied venv's scripts at their new place (each rewritten file stops sharing its inode)."""
    for script in (venv / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        try:
            text = script.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if old in text:
            mode = script.stat().st_mode
            script.unlink()
            script.write_text(text.replace(old, new))
            os.chmod(script, mode)
    config = venv / "pyvenv.cfg"
    if config.exists() and old in config.read_text():
        text = config.read_text()
        config.unlink()
        config.write_text(text.replace(old, new))


def _tree_size(root: Path) -> int:
    seen, total = set(), 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                stat = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def _uv_env(image_env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, **(image_env or {}))
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", NO_COLOR="1")
    env.pop("VIRTUAL_ENV", None)
    return env


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _log_crash(task: asyncio.Task, image_id: str) -> None:
    """A build task that ended with an exception of its own (its failures are BuildEvents, not exceptions)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("build %s crashed: %s", image_id, task.exception())


async def _discard_output(line: str) -> None:
    pass


async def _run(argv: list[str], output, env: dict[str, str] | None = None, cwd: str | None = None,
               what: str = "") -> None:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            env=env, cwd=cwd)
    except FileNotFoundError as exc:
        raise ImageError(f"{what or argv[0]}: {exc.strerror}: {exc.filename}") from None
    tail: deque[str] = deque(maxlen=6)
    assert process.stdout is not None
    async for raw in process.stdout:
        line = raw.decode("utf-8", "replace")
        tail.append(line)
        await output(line)
    returncode = await process.wait()
    if returncode != 0:
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        raise ImageError(f"{what or argv[0]} failed (exit code {returncode})" + (f": {last}" if last else ""))


async def _capture(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise ImageError(f"{argv[0]} failed: {out.decode(errors='replace').strip()}")
    return out.decode().strip()


async def _returncode(argv: list[str]) -> int:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return await process.wait()

"""IPython magics: thin sugar over the Python API.

``%%remote [--detach] [session=NAME] [timeout=SECONDS] [grace=SECONDS] [max_result=SIZE]``
runs the cell on the agent. ``%nbmodal VERB ...`` manages runs, sessions and
the agent (the same verbs as the ``nbmodal`` CLI).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbmodal import commands
from nbmodal.output import default_sink
from nbmodal.remote_cell import CellOptions, run_cell
from nbmodal_wire.gpu_request import GpuRequestError, parse_gpu_request

_OPTION_KEYS = ("host", "image", "gpu", "cpu", "memory", "volumes", "map", "session", "timeout", "grace",
                "max_result")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
               "g": 1e9, "gb": 1e9, "gib": 1024**3}


def parse_cell_options(tokens: list[str], detach: bool) -> CellOptions:
    """``key=value`` tokens of the %%remote line, with errors that say what's wrong."""
    options = CellOptions(detach=detach)
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().lower()
        if not sep or not value:
            raise UsageError(f"%%remote: expected key=value, got {token!r} (options: {', '.join(_OPTION_KEYS)})")
        if key == "image":
            options.image = value  # resolved against %%image names and notebook variables by the magic
        elif key == "host":
            from nbmodal.hosts import LOCAL, HostError, get_host

            if value != LOCAL:
                try:
                    get_host(value)
                except HostError as exc:
                    raise UsageError(f"%%remote: {exc}") from None
            options.host = value
        elif key == "gpu":
            try:
                parse_gpu_request(value)
            except GpuRequestError as exc:
                raise UsageError(f"%%remote: {exc}") from None
            options.gpu = value
        elif key == "cpu":
            options.cpu = _positive_float(key, value)
        elif key == "memory":
            if not value.isdigit() or int(value) <= 0:
                raise UsageError(f"%%remote: memory={value!r} must be a whole number of MiB, like memory=4096")
            options.memory = int(value)
        elif key == "volumes":
            options.volumes = _parse_volumes(value)
        elif key == "map":
            name, sep, source = value.partition(":")
            if not sep or not name.isidentifier() or not source.isidentifier():
                raise UsageError(f"%%remote: map={value!r} must be NAME:LIST, like map=lr:lrs (run the cell once "
                                 f"per value of the notebook list lrs, bound to lr)")
            options.map = (name, source)
        elif key == "session":
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
                raise UsageError(f"%%remote: session name {value!r} must be 1-64 letters, digits, '_', '.' or '-'")
            options.session = value
        elif key in ("timeout", "grace"):
            seconds = _positive_float(key, value)
            setattr(options, key, seconds)
        elif key == "max_result":
            match = _SIZE.match(value)
            if not match or (match.group(2) or "").lower() not in _SIZE_UNITS:
                raise UsageError(f"%%remote: max_result={value!r} is not a size (e.g. 64MiB, 500MB, 1000000)")
            options.max_result_bytes = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
        else:
            raise UsageError(f"%%remote: unknown option {key!r} (options: {', '.join(_OPTION_KEYS)}, --detach)")
    return options


def _parse_volumes(value: str) -> dict[str, str]:
    """``ckpt:/ckpt,data:/data`` → {mount path: volume name}."""
    from nbmodal_wire.names import MountError, check_mount_path, check_name

    mounts = {}
    for part in (p.strip() for p in value.split(",") if p.strip()):
        name, sep, path = part.partition(":")
        if not sep or not name or not path:
            raise UsageError(f"%%remote: volumes={value!r}: each mount is NAME:/path, like ckpt:/ckpt")
        try:
            check_name("volume", name)
            path = check_mount_path(name, path)
        except ValueError as exc:  # InvalidNameError, MountError
            raise UsageError(f"%%remote: {exc}") from None
        if path in mounts:
            raise UsageError(f"%%remote: two volumes are mounted at {path}")
        mounts[path] = name
    return mounts


def _positive_float(key: str, value: str) -> float:
    try:
        number = float(value.rstrip("s"))
    except ValueError:
        raise UsageError(f"%%remote: {key}={value!r} must be a number of seconds") from None
    if number <= 0:
        raise UsageError(f"%%remote: {key}= must be more than 0 seconds, got {value!r}")
    return number


@magics_class
class RemoteMagics(Magics):
    @magic_arguments()
    @argument("--detach", action="store_true",
              help="return at once with a live widget; the run goes on if the kernel dies")
    @argument("options", nargs="*",
              help="key=value: host=NAME (an `nbmodal host add` host, or local), "
                   "gpu=TYPE[:COUNT][,FALLBACK…] (any, T4, L4, A10G, A100-80GB, H100, …), "
                   "cpu=CORES, memory=MIB (reserved for the container), "
                   "volumes=NAME:/path[,NAME:/path…], map=NAME:LIST (a sweep: once per value, in parallel), "
                   "session=NAME (keep the namespace across cells), timeout=SECONDS, "
                   "grace=SECONDS (after an interrupt, before the container is killed; default 10), "
                   "max_result=SIZE (session values above it stay remote; default 16MiB)")
    @cell_magic
    def remote(self, line: str, cell: str):
        """Run this cell on the nbmodal agent, with the notebook variables it reads.

        Example::

            %%remote session=train timeout=600
            model = fit(data)
        """
        args = parse_argstring(self.remote, line)
        options = parse_cell_options(args.options, args.detach)
        if options.image:
            options.image = self._image_named(options.image, "%%remote")
        if options.map:
            source = options.map[1]
            if source not in self.shell.user_ns:
                raise UsageError(f"%%remote: map={options.map[0]}:{source}: the notebook has no {source!r}")
            try:
                iter(self.shell.user_ns[source])
            except TypeError:
                raise UsageError(f"%%remote: map=...:{source}: {source} is a "
                                 f"{type(self.shell.user_ns[source]).__name__}, not a list of values") from None
            if options.session or options.detach:
                raise UsageError("%%remote: map= runs many containers at once: it can't use session= or --detach")
        return run_cell(self.shell, cell, options)

    def _image_named(self, name: str, magic: str):
        from nbmodal._runtime.images import named_images
        from nbmodal.image import Image

        value = self.shell.user_ns.get(name)
        if isinstance(value, Image):
            return value
        if name in named_images:
            return named_images[name]
        known = sorted(set(named_images) | {k for k, v in self.shell.user_ns.items()
                                             if isinstance(v, Image) and not k.startswith("_")})
        raise UsageError(f"{magic}: image={name!r} is neither an image defined with %%image nor a notebook variable "
                         f"holding an nbmodal.Image" + (f" (images here: {', '.join(known)})" if known else
                                                         "; define one with a %%image cell first"))

    @magic_arguments()
    @argument("name", help="the image's name (also a notebook variable holding it)")
    @argument("options", nargs="*", help="host=NAME: build it on this host now (default: the local agent), "
                                         "build=no: only define it")
    @cell_magic
    def image(self, line: str, cell: str):
        """Define an image, one step per line, and build it now with its log shown live.

        Example::

            %%image torch
            python 3.11
            pip torch==2.5 numpy
            env HF_HOME=/root/.cache/hf
            preload torch
        """
        from nbmodal._runtime.images import named_images
        from nbmodal.exceptions import ImageDefinitionError
        from nbmodal.image import parse_image_cell

        args = parse_argstring(self.image, line)
        if not args.name.isidentifier():
            raise UsageError(f"%%image: the name {args.name!r} must be a Python identifier, like torch_env")
        host, build = "", True
        for token in args.options:
            key, _, value = token.partition("=")
            if key == "host" and value:
                host = value
            elif key == "build" and value in ("no", "yes"):
                build = value == "yes"
            else:
                raise UsageError(f"%%image: unknown option {token!r} (host=NAME, build=no)")
        try:
            image = parse_image_cell(args.name, cell, Path.cwd())
        except ImageDefinitionError as exc:
            raise UsageError(str(exc)) from None
        image.name = args.name
        named_images[args.name] = image
        self.shell.user_ns[args.name] = image
        if build:
            from nbmodal._runtime.connection import place
            from nbmodal._runtime.images import ensure_built

            target = place(host, spec=None)
            ensure_built(image, target, default_sink())
        return None

    @line_magic("image")
    def image_line(self, line: str):
        """%image NAME: the image's steps and its build state on each host."""
        words = shlex.split(line)
        if len(words) != 1:
            raise UsageError("%image NAME (see %nbmodal image ls for every image)")
        image = self._image_named(words[0], "%image")
        from nbmodal._runtime.images import built_on

        print(repr(image))
        states = built_on(image)
        print("\n".join(f"built on {host}: {image_id[:12]}" for host, image_id in states) or
              "not built from this kernel yet (it builds on first use, or run its %%image cell)")

    @line_magic
    def volume(self, line: str):
        """%volume create|ls|put|get|rm|delete NAME …  (as `nbmodal volume`)."""
        from nbmodal.cli import add_volume_arguments, run_volume_command

        print(run_volume_command(_parse_words("volume", add_volume_arguments, shlex.split(line))))

    @line_magic
    def nbmodal(self, line: str):
        """Manage runs, sessions and the agent.

        %nbmodal runs | sessions | containers | gpus | logs RUN_ID | attach RUN_ID |
        stop RUN_ID_OR_SESSION [--force] | agent status|start|stop |
        host add NAME TARGET [--ssh-config PATH] [--accept-new-host-key] | host ls | host rm NAME |
        host doctor NAME | dict|queue ls|peek|len|clear|delete [NAME] | image ls|build FILE|rm NAME
        """
        words = shlex.split(line)
        if not words:
            raise UsageError(self.nbmodal.__doc__)
        verb, rest = words[0], words[1:]
        if verb == "gpus":
            print(commands.gpus_table())
        elif verb == "runs":
            print(commands.runs_table())
        elif verb == "sessions":
            print(commands.sessions_table())
        elif verb == "containers":
            print(commands.containers_table())
        elif verb in ("logs", "attach", "stop") and not rest:
            raise UsageError(f"%nbmodal {verb} needs a run id (see %nbmodal runs)")
        elif verb == "logs":
            commands.show_logs(rest[0], default_sink())
        elif verb == "attach":
            return commands.attach(rest[0], default_sink(), self.shell)
        elif verb == "stop":
            print(commands.stop(rest[0], force="--force" in rest))
        elif verb == "host":
            from nbmodal.cli import add_host_arguments, run_host_command

            print(run_host_command(_parse_words("host", add_host_arguments, rest)))
        elif verb == "image":
            from nbmodal.cli import add_image_arguments

            args = _parse_words("image", add_image_arguments, rest)
            print(commands.image_command(args.verb, args.name, args.host, default_sink(), args.force))
        elif verb in ("dict", "queue"):
            from nbmodal.cli import add_store_arguments

            args = _parse_words(verb, add_store_arguments, rest)
            print(commands.store_command(verb, args.verb, args.name, args.host, args.n))
        elif verb == "agent":
            action = rest[0] if rest else "status"
            actions = {"status": commands.agent_status, "start": commands.agent_start, "stop": commands.agent_stop}
            if action not in actions:
                raise UsageError("%nbmodal agent status|start|stop")
            print(actions[action]())
        else:
            raise UsageError(f"unknown verb {verb!r}. " + self.nbmodal.__doc__)


def _parse_words(verb: str, add_arguments, words: list[str]):
    """The CLI's parser for a %nbmodal verb, with usage errors as UsageError."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"%nbmodal {verb}", exit_on_error=False)
    add_arguments(parser)
    try:
        return parser.parse_args(words)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"%nbmodal {verb}: {exc}") from None
